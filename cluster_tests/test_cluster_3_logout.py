"""CLUSTER-3: a logout on one host is refused at once on every other host and worker."""

from __future__ import annotations

from collections import Counter

import pytest

from cluster_tests.conftest import Cluster
from cluster_tests.observe import front_requests, hosts_reached, post
from harness.client import Session, assert_problem
from harness.fakes import new_token
from harness.spec import route
from harness.system import Fake, Running, User

pytestmark = pytest.mark.req("CLUSTER-3")

CHAT = route("chat")
#: Requests on fresh connections: with 2 hosts x 2 workers, enough to reach every worker
#: (and so fill every worker's session cache) with a good margin.
SPREAD = 16


def test_cluster_3_a_logout_on_one_host_is_refused_on_all_the_others_at_once(
    cluster: Cluster, limited_tier: tuple[Running, Fake], alice: User, findings: dict
) -> None:
    gateway, fake = limited_tier
    session = Session.of(gateway.url, alice)  # a session of its own
    tier = cluster.tier(gateway)
    warm = new_token()
    mark = front_requests(tier)
    assert [post(session, CHAT, warm).status_code for _ in range(SPREAD)] == [200] * SPREAD
    assert len(set(hosts_reached(tier, since=mark))) == 2, "the session was used on both hosts"
    with session.client() as client:
        assert client.post("/api/auth/logout/").status_code in (200, 204)
    after = new_token()
    mark = front_requests(tier)
    for _ in range(SPREAD):
        assert_problem(post(session, CHAT, after), 401)
    assert len(set(hosts_reached(tier, since=mark))) == 2, "refused on both hosts"
    assert fake.control.requests(after) == [], "nothing reached the service after the logout"
    findings["CLUSTER-3"] = {
        "requests before the logout (200)": SPREAD,
        "requests after it (401), by host": dict(Counter(hosts_reached(tier, since=mark))),
    }
