"""CLUSTER-7: Redis away or restarting: no 500, no hang, and the spec's rule per limit.

The rule: rate limits and the stream cap fail open *to each worker* (each counts on
its own until Redis is back), session revocation fails closed (every session is
checked in the database). A tier of its own, so its counters start from nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from cluster_tests.conftest import Cluster
from cluster_tests.observe import (
    BackgroundLoad,
    front_requests,
    hosts_reached,
    open_stream,
    poll,
    post,
)
from harness.client import Session, assert_problem, read_events
from harness.fakes import new_token
from harness.spec import route
from harness.system import Fake, Harness, Running, User

pytestmark = pytest.mark.req("CLUSTER-7")

CHAT = route("chat")
STREAM = route("chat_stream")
QUIZ = route("quiz_generate")
QUIZ_RATE = 3
CLIENTS = 8
#: How long one answer may take before it counts as a hang (the gateway's own bound on
#: a Redis call is 1 s; the fake answers at once).
HANG = 10.0


@pytest.fixture(scope="module")
def own_tier(harness: Harness, users: list[User]) -> Iterator[tuple[Running, Fake]]:
    fake = harness.start_fake_service()
    gateway = harness.start_gateway(fake.url, users, quiz_rate=f"{QUIZ_RATE}/d")
    yield gateway, fake
    gateway.process.stop()


@pytest.fixture
def redis_back(cluster: Cluster) -> Iterator[None]:
    """Whatever happens in the test, Redis runs again after it."""
    yield
    if cluster.redis.process is None:
        cluster.redis.start()


@pytest.mark.usefixtures("redis_back")
def test_cluster_7_a_redis_restart_under_load_brings_no_500_and_no_hang(
    cluster: Cluster, own_tier: tuple[Running, Fake], users: list[User], findings: dict
) -> None:
    gateway, _ = own_tier
    sessions = [Session.of(gateway.url, user) for user in users]
    load = BackgroundLoad(CLIENTS, _chat_or_stream(sessions))
    load.start()
    try:
        poll(lambda: load.total() >= 40, within=20, every=0.05, what="load under way")
        cluster.redis.stop()
        mark = load.total()
        poll(lambda: load.total() >= mark + 40, within=20, every=0.05, what="load while away")
        cluster.redis.start()
        mark = load.total()
        poll(lambda: load.total() >= mark + 40, within=20, every=0.05, what="load after")
    finally:
        load.stop(within=HANG + 5)
    outcomes = load.outcomes()
    findings["CLUSTER-7 restart under load"] = dict(outcomes)
    assert set(outcomes) == {"200"}, outcomes


@pytest.mark.usefixtures("redis_back")
def test_cluster_7_while_redis_is_away_rates_count_per_worker_and_logout_holds_everywhere(
    cluster: Cluster, own_tier: tuple[Running, Fake], users: list[User], findings: dict
) -> None:
    gateway, fake = own_tier
    workers = 2 * cluster.info.workers  # two gateway hosts
    alice, bob = (Session.of(gateway.url, user) for user in users)
    tier = cluster.tier(gateway)
    cluster.redis.stop()
    # Fail open to each worker: more than the rate gets through, at most the rate per worker.
    token = new_token()
    mark = front_requests(tier)
    answers = [post(bob, QUIZ, token) for _ in range(workers * QUIZ_RATE + 8)]
    passed = [a for a in answers if a.status_code == 200]
    for refused in (a for a in answers if a.status_code != 200):
        assert_problem(refused, 429)
    findings["CLUSTER-7 rate while away"] = {
        "rate per worker": f"{QUIZ_RATE}/d",
        "workers": workers,
        "sent": len(answers),
        "admitted": len(passed),
    }
    assert QUIZ_RATE < len(passed) <= workers * QUIZ_RATE, len(passed)
    assert len(set(hosts_reached(tier, since=mark))) == 2
    # Fail closed: a logout during the outage is refused at once on every host and worker,
    # though every worker has just seen (and could have cached) the session.
    assert [post(alice, CHAT, new_token()).status_code for _ in range(16)] == [200] * 16
    with alice.client() as client:
        assert client.post("/api/auth/logout/").status_code in (200, 204)
    after = new_token()
    for _ in range(16):
        assert_problem(post(alice, CHAT, after), 401)
    assert fake.control.requests(after) == []
    # Back: the workers share their counters again, without a restart.
    cluster.redis.start()
    shared = redis.Redis.from_url(cluster.info.redis_url)
    counters = f"{tier.instance['redis_prefix']}rate:chat:*"
    try:
        poll(
            lambda: (
                post(bob, CHAT, new_token()).status_code == 200
                and any(shared.scan_iter(match=counters, count=1000))
            ),
            within=10,
            every=0.2,
            what="the gateway counts in Redis again",
        )
    finally:
        shared.close()


def _chat_or_stream(sessions: list[Session]) -> Callable[[int, int], str]:
    """Every fourth request a stream that must end with ``done``, the rest chats."""

    def request(client: int, n: int) -> str:
        session = sessions[client % len(sessions)]
        if n % 4:
            return str(post(session, CHAT, new_token()).status_code)
        with open_stream(session, STREAM, new_token()) as response:
            events = [event.event for event in read_events(response)]
            if response.status_code == 200 and events[-1:] == ["done"]:
                return "200"
            return f"stream {response.status_code} {events[-1:]}"

    return request
