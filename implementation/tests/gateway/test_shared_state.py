"""gateway/state/: limits, leases and revocations that every worker shares, on a real Redis.

Two ``SharedLimits`` over one Redis stand for two workers (or two hosts); each
test has a key prefix of its own, and every key under it is deleted afterwards.
The fallback while Redis is away is checked against a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis
from django.test import override_settings

from gateway import limits, routes
from gateway.auth import session_users as session_users_module
from gateway.state import shared as shared_module
from gateway.state.admission import SharedLimits, Verdict
from gateway.state.connection import RedisLink
from gateway.state.keys import Keys

pytestmark = pytest.mark.usefixtures("fresh_limits")

CHAT = next(route for route in routes.served() if route.path == "/api/chat/")
STREAM = next(route for route in routes.served() if route.path == "/api/chat/stream/")


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are gone afterwards."""
    prefix = f"unit-{secrets.token_hex(4)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest_asyncio.fixture
async def workers(redis_url: str, prefix: str) -> AsyncIterator[list[SharedLimits]]:
    """Two workers' shared limits (lease 1 s), closed after the test."""
    made = [
        SharedLimits(RedisLink(redis_url, timeout=1.0), Keys(prefix), lease_seconds=1.0)
        for _ in range(2)
    ]
    yield made
    for worker in made:
        await worker.aclose()
        await worker.link.aclose()


async def _admit(worker: SharedLimits, *, user: object = 1, count: int = 100, **kw: object):
    values = {"bucket": "chat", "user_id": user, "count": count, "period": 60}
    values.update({"stream_limit": None, "session_key": None}, **kw)
    return await worker.admit(**values)  # type: ignore[arg-type]


async def _poll(predicate, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


# -- the rate (LIMIT-4 across workers) -----------------------------------------------------------
@pytest.mark.asyncio
async def test_the_rate_counts_requests_on_every_worker_together(workers):
    first, second = workers
    verdicts = [(await _admit(workers[i % 2], count=5)).verdict for i in range(5)]
    assert verdicts == [Verdict.ADMITTED] * 5
    refused = await _admit(second, count=5)
    assert refused.verdict is Verdict.RATE
    assert 1 <= refused.retry_after <= 60
    assert (await _admit(first, count=5)).verdict is Verdict.RATE
    # Another user has a window of their own.
    assert (await _admit(first, user=2, count=5)).verdict is Verdict.ADMITTED


@pytest.mark.asyncio
async def test_a_refused_request_still_uses_up_the_rate(workers):
    first, _ = workers
    assert (await _admit(first, count=1, stream_limit=1)).verdict is Verdict.ADMITTED
    assert (await _admit(first, count=1, stream_limit=1)).verdict is Verdict.RATE


# -- stream slots as leases (LIMIT-3 across workers) ---------------------------------------------
@pytest.mark.asyncio
async def test_stream_slots_are_shared_and_come_back_on_release(workers):
    first, second = workers
    a = await _admit(first, stream_limit=2)
    b = await _admit(second, stream_limit=2)
    assert a.lease is not None
    assert b.lease is not None
    assert (await _admit(first, stream_limit=2)).verdict is Verdict.STREAMS
    a.lease.release()
    a.lease.release()  # twice is once

    async def free() -> bool:
        return (await _admit(second, stream_limit=2, count=10_000)).verdict is Verdict.ADMITTED

    await _poll(free, within=2.0, what="a released lease frees its slot")
    b.lease.release()


@pytest.mark.asyncio
async def test_a_dead_workers_leases_expire_and_a_live_one_keeps_its_own(workers):
    dead, live = workers
    held = await _admit(live, stream_limit=2)
    assert (await _admit(dead, stream_limit=2)).verdict is Verdict.ADMITTED
    # The worker dies: nothing renews or releases its lease any more.
    dead._renewer.cancel()
    dead._leases.clear()
    assert (await _admit(live, stream_limit=2)).verdict is Verdict.STREAMS
    started = time.monotonic()

    async def slot_back() -> bool:
        return (await _admit(live, stream_limit=2, count=10_000)).verdict is Verdict.ADMITTED

    await _poll(slot_back, within=3.0, what="the dead worker's lease expires")
    # Renewed every third of a lease, the live worker's first slot outlived 1 s.
    assert time.monotonic() - started >= 0.5
    assert (await _admit(dead, stream_limit=2, count=10_000)).verdict is Verdict.STREAMS
    assert held.lease is not None
    held.lease.release()


# -- revocation (CLUSTER-3) ----------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_revoked_session_is_refused_everywhere_without_counting(redis_url, prefix, workers):
    first, _ = workers
    with override_settings(REDIS_URL=redis_url, GATEWAY_REDIS_PREFIX=prefix):
        shared_module.shared_state.cache_clear()
        try:
            shared_module.shared_state().revoke("session-key-1")
        finally:
            shared_module.shared_state.cache_clear()
    refused = await _admit(first, count=1, session_key="session-key-1")
    assert refused.verdict is Verdict.REVOKED
    # Not counted: the same user is still within a rate of one.
    assert (await _admit(first, count=1, session_key="session-key-2")).verdict is Verdict.ADMITTED
    raw = redis.Redis.from_url(redis_url)
    try:
        marked = [key.decode() for key in raw.scan_iter(f"{prefix}revoked:*")]
        assert len(marked) == 1
        assert "session-key-1" not in marked[0]
        assert 0 < raw.ttl(marked[0]) <= 120
    finally:
        raw.close()


# -- gateway/limits.py: shared when configured, per worker while Redis is away (CLUSTER-7) -------
@pytest.fixture
def shared_settings(redis_url: str, prefix: str) -> Iterator[None]:
    with override_settings(
        REDIS_URL=redis_url,
        GATEWAY_REDIS_PREFIX=prefix,
        GATEWAY_RATE_LIMIT_CHAT="3/m",
        GATEWAY_MAX_STREAMS_PER_USER=1,
    ):
        shared_module.shared_state.cache_clear()
        yield
        shared_module.shared_state.cache_clear()


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_settings")
async def test_admit_counts_in_redis_and_refuses_a_logged_out_session():
    try:
        for _ in range(3):
            refusal, slot = await limits.admit(CHAT, 7, session_key="live")
            assert refusal is None
            assert slot is None
        refusal, _ = await limits.admit(CHAT, 7, session_key="live")
        assert refusal is not None
        assert refusal.status_code == 429
        session_users_module.evict_logged_out(None, request=_Request("gone"))
        assert await limits.admit(CHAT, 8, session_key="gone") is None
    finally:
        await shared_module.shared_state().aclose()


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_settings")
async def test_stream_leases_through_admit_hold_one_per_user_across_workers():
    shared = shared_module.shared_state()
    try:
        refusal, lease = await limits.admit(STREAM, 9)
        assert refusal is None
        assert lease is not None
        refusal, _ = await limits.admit(STREAM, 9)
        assert refusal is not None
        assert refusal.status_code == 429
        assert limits.stream_slots.open_streams(9) == 0  # held in Redis, not here
        lease.release()
        await asyncio.wait(shared.limits._pending, timeout=2)
        refusal, lease = await limits.admit(STREAM, 9)
        assert refusal is None
        assert lease is not None
        lease.release()
    finally:
        await shared.aclose()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed at once: nothing listens there


@pytest.mark.asyncio
async def test_while_redis_is_away_limits_count_per_worker_and_no_cached_session_is_trusted():
    url = f"redis://127.0.0.1:{_dead_port()}/0"
    with override_settings(
        REDIS_URL=url, GATEWAY_RATE_LIMIT_CHAT="2/m", GATEWAY_MAX_STREAMS_PER_USER=1
    ):
        shared_module.shared_state.cache_clear()
        try:
            shared = shared_module.shared_state()
            started = time.monotonic()
            # A cached session cannot be checked against revocations: Django decides.
            assert await limits.admit(CHAT, 11, session_key="cached") is None
            assert not shared.link.available
            assert shared.link.outages == 1
            # Without a session to check (Django's path), the worker's own counters hold.
            assert (await limits.admit(CHAT, 11))[0] is None
            assert (await limits.admit(CHAT, 11))[0] is None
            refusal, _ = await limits.admit(CHAT, 11)
            assert refusal is not None
            assert refusal.status_code == 429
            refusal, slot = await limits.admit(STREAM, 12)  # chat's bucket: another user
            assert refusal is None
            assert slot is not None
            assert (await limits.admit(STREAM, 12))[0].status_code == 429
            slot.release()
            assert time.monotonic() - started < 2.0  # the breaker: no timeout per request
        finally:
            shared_module.shared_state.cache_clear()


class _Request:
    def __init__(self, session_key: str) -> None:
        self.session = type("S", (), {"session_key": session_key})()


def test_outage_callbacks_run_when_an_outage_starts_and_when_it_ends():
    """Cached sessions are dropped as Redis goes away and again when it is back (not per error)."""
    now = [0.0]
    link = RedisLink("redis://127.0.0.1:1/0", timeout=0.1, cooldown=1.0, clock=lambda: now[0])
    calls = []
    link.on_outage(lambda: calls.append(now[0]))
    link.failed(ConnectionError("refused"))
    assert not link.available
    now[0] = 1.5
    assert link.available  # the breaker lets one call try again
    link.failed(ConnectionError("still refused"))
    assert calls == [0.0]
    assert link.outages == 1
    link.succeeded()
    link.succeeded()
    assert calls == [0.0, 1.5]
    assert link.available


# -- gateway/state/batching.py ---------------------------------------------------------------------
@pytest.mark.asyncio
async def test_concurrent_admissions_share_round_trips_and_each_gets_its_own_answer(workers):
    first, _ = workers
    decisions = await asyncio.gather(*(_admit(first, user=n % 3, count=40) for n in range(300)))
    assert [d.verdict for d in decisions].count(Verdict.ADMITTED) == 120  # 40 for each user
    assert [d.verdict for d in decisions].count(Verdict.RATE) == 180
    assert first._admit.batches < 20  # 300 calls, a handful of pipelines


@pytest.mark.asyncio
async def test_a_script_redis_forgot_is_loaded_again(workers, redis_url):
    first, _ = workers
    assert (await _admit(first)).verdict is Verdict.ADMITTED
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.script_flush()  # what a restart does to the script cache
    finally:
        raw.close()
    together = await asyncio.gather(*(_admit(first) for _ in range(5)))
    assert [d.verdict for d in together] == [Verdict.ADMITTED] * 5
