"""CLUSTER-2: LIMIT-3 and LIMIT-4 hold for every host and worker together."""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest

from cluster_tests.conftest import Cluster
from cluster_tests.observe import forwarded_for, front_requests, hosts_reached, open_stream, post
from harness.client import Session, assert_problem, read_events
from harness.fakes import new_token
from harness.spec import route
from harness.system import Fake, Running, User

pytestmark = pytest.mark.req("CLUSTER-2")

STREAM = route("chat_stream")
QUIZ = route("quiz_generate")


def test_cluster_2_a_users_stream_over_the_cap_is_refused_on_every_host(
    cluster: Cluster, limited_tier: tuple[Running, Fake], alice: User, findings: dict
) -> None:
    gateway, fake = limited_tier
    cap = int(gateway.knob("max_streams_per_user"))
    session = Session.of(gateway.url, alice)
    token = fake.control.behave(hold_after=1)
    tier = cluster.tier(gateway)
    with contextlib.ExitStack() as streams:
        for _ in range(cap):
            opened = streams.enter_context(open_stream(session, STREAM, token))
            assert opened.status_code == 200
        held = fake.control.wait_for(lambda r: len(r) == cap, match=token)
        assert len(forwarded_for(held)) == 2, "the open streams are carried by both hosts"
        mark = front_requests(tier)
        refused = [post(session, STREAM, token) for _ in range(6)]
        for response in refused:
            assert_problem(response, 429)
            assert response.headers["Retry-After"].isdigit()
        assert len(set(hosts_reached(tier, since=mark))) == 2, "refused on both hosts"
        assert len(fake.control.requests(token)) == cap, "no refused stream reached the service"
        findings["CLUSTER-2 streams"] = {
            "cap": cap,
            "open, by host": sorted(forwarded_for(held)),
            "refused with 429": len(refused),
            "refusals by host": dict(Counter(hosts_reached(tier, since=mark))),
        }
        fake.control.release(token, count=cap)
    # A slot is free again once its stream ended, whichever host held it.
    with open_stream(session, STREAM, new_token()) as again:
        assert again.status_code == 200
        assert [event.event for event in read_events(again)][-1] == "done"


def test_cluster_2_the_rate_counts_requests_on_every_host_together(
    limited_tier: tuple[Running, Fake], bob: User, findings: dict
) -> None:
    gateway, fake = limited_tier
    rate = int(gateway.knob("quiz_rate").split("/")[0])
    session = Session.of(gateway.url, bob)
    token = new_token()
    answers = [post(session, QUIZ, token) for _ in range(rate + 4)]
    assert [answer.status_code for answer in answers[:rate]] == [200] * rate
    for refused in answers[rate:]:
        assert_problem(refused, 429)
    counted = fake.control.requests(token)
    assert len(counted) == rate, "each refusal stopped at the gateway"
    assert len(forwarded_for(counted)) == 2, "the counted requests came from both hosts"
    findings["CLUSTER-2 rate"] = {
        "rate": gateway.knob("quiz_rate"),
        "sent": len(answers),
        "admitted": rate,
        "refused with 429": len(answers) - rate,
        "admitted, by host": dict(Counter(h for r in counted for h in forwarded_for([r]))),
    }
