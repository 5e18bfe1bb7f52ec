"""CLUSTER-4: a stream whose client leaves is cancelled through to the LLM, on every host."""

from __future__ import annotations

import pytest

from cluster_tests.conftest import Cluster
from cluster_tests.observe import forwarded_for, front_requests, hosts_reached, open_stream
from harness.client import Session, read_events
from harness.fakes import new_token
from harness.spec import route
from harness.system import Fake, Running, User

pytestmark = pytest.mark.req("CLUSTER-4")

STREAM = route("chat_stream")
LEAVERS = 6  # clients that leave mid-stream, spread by the balancers over the hosts


def test_cluster_4_a_client_that_leaves_cancels_the_llm_stream_whichever_host_carried_it(
    cluster: Cluster, gateway_tier: Running, fake_llm_server: Fake, alice: User
) -> None:
    session = Session.of(gateway_tier.url, alice)
    llm = fake_llm_server.control
    tier = cluster.tier(gateway_tier)
    mark = front_requests(tier)
    tokens = []
    for _ in range(LEAVERS):
        token = llm.behave(new_token(), tokens=1000, token_delay=0.05)
        tokens.append(token)
        with open_stream(session, STREAM, token) as response:
            assert response.status_code == 200
            first = next(read_events(response))
            assert first.event == "token"
        # The client left here, a token in: the LLM must see its request aborted.
    for token in tokens:
        records = llm.wait_for(lambda r: len(r) == 1 and r[0]["aborted"], match=token, timeout=10)
        assert not records[0]["completed"]
    assert len(set(hosts_reached(tier, since=mark))) == 2, "both gateway hosts carried streams"
    seen = [r for token in tokens for r in llm.requests(token)]
    assert len(forwarded_for(seen)) == 2, "both service hosts carried streams"
