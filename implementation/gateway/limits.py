"""Per-user limits checked before a request reaches the service (LIMIT-3, LIMIT-4).

Rate limits: a fixed window per route's bucket (gateway/routes.py); streams: at
most GATEWAY_MAX_STREAMS_PER_USER open per user. With REDIS_URL both hold across
every worker and host (gateway/state/: one round trip, stream slots as leases);
without it, or while Redis is away, each worker counts on its own: the rate with
one atomic ``incr`` in Django's cache, the streams in this process (CLUSTER-7).
The README ("A hostile world") explains both choices. ``admit`` serves the async
routes; ``admit_sync`` the seed's sync views (apps/chatbot/views.py), which keep
the per-worker counters.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpResponseBase

from gateway.observability.exchange import note_limited
from gateway.problems import problem
from gateway.routes import ProxyRoute
from gateway.state.decision import Decision, Verdict
from gateway.state.shared import shared_state

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([smhd])\s*")
#: Backends that keep their data in this process: their sync methods do no I/O.
IN_PROCESS_CACHES: tuple[type[BaseCache], ...] = (LocMemCache, DummyCache)


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period`` seconds."""

    count: int
    period: int


@lru_cache(maxsize=32)
def parse_rate(text: str) -> Rate:
    """``"60/m"`` -> Rate(60, 60); ValueError saying what is wrong otherwise."""
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate: use N/s, N/m, N/h or N/d (e.g. 60/m)")
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"{text!r} allows no request at all: N must be at least 1")
    return Rate(count, PERIODS[match.group(2)])


def window(rate: Rate, now: float) -> tuple[int, int]:
    """(index of the fixed window holding ``now``, whole seconds until it ends, >= 1)."""
    index = int(now // rate.period)
    left = (index + 1) * rate.period - now
    return index, max(1, math.ceil(left))


class RateLimiter:
    """Fixed-window request counters in a Django cache."""

    def __init__(self, cache: BaseCache, *, clock: Any = time.time) -> None:
        self.cache = cache
        self.clock = clock
        self.in_process = isinstance(cache, IN_PROCESS_CACHES)

    async def hit(self, bucket: str, user_id: object, rate: Rate) -> int | None:
        """Count one request; None if it is allowed, else the seconds until it may retry."""
        key, ttl, left = self._counter(bucket, user_id, rate)
        if self.in_process:
            count = self._incr(key, ttl)
        else:
            count = await self._aincr(key, ttl)
        return None if count <= rate.count else left

    def hit_sync(self, bucket: str, user_id: object, rate: Rate) -> int | None:
        """``hit`` for sync code (a worker thread): the cache's sync API, whatever the backend."""
        key, ttl, left = self._counter(bucket, user_id, rate)
        return None if self._incr(key, ttl) <= rate.count else left

    def _counter(self, bucket: str, user_id: object, rate: Rate) -> tuple[str, int, int]:
        """(the key counting this window, its time to live, whole seconds until it ends)."""
        index, left = window(rate, self.clock())
        ttl = rate.period + 1  # outlives its window a little, then expires by itself
        return f"rate:{bucket}:{user_id}:{rate.period}:{index}", ttl, left

    def _incr(self, key: str, ttl: int) -> int:
        try:
            return self.cache.incr(key)
        except ValueError:  # the window's first request
            if self.cache.add(key, 1, ttl):
                return 1
            return self.cache.incr(key)  # another request created it meanwhile

    async def _aincr(self, key: str, ttl: int) -> int:
        try:
            return await self.cache.aincr(key)
        except ValueError:
            if await self.cache.aadd(key, 1, ttl):
                return 1
            return await self.cache.aincr(key)


class StreamSlots:
    """How many streams each user has open in this worker.

    Thread-safe: the async routes take and give back slots on the event loop,
    the sync views in worker threads. (A locked plain dict costs less than the
    unlocked Counter it replaced.)
    """

    def __init__(self) -> None:
        self._open: dict[object, int] = {}
        self._lock = threading.Lock()

    def acquire(self, user_id: object, limit: int) -> Slot | None:
        """A slot, or None when the user already has ``limit`` streams open."""
        with self._lock:
            count = self._open.get(user_id, 0)
            if count >= limit:
                return None
            self._open[user_id] = count + 1
        return Slot(self, user_id)

    def _release(self, user_id: object) -> None:
        with self._lock:
            count = self._open[user_id] - 1
            if count > 0:
                self._open[user_id] = count
            else:
                del self._open[user_id]

    def open_streams(self, user_id: object) -> int:
        return self._open.get(user_id, 0)


class Slot:
    """One open stream; ``release()`` may be called any number of times."""

    __slots__ = ("_slots", "_user_id")

    def __init__(self, slots: StreamSlots, user_id: object) -> None:
        self._slots: StreamSlots | None = slots
        self._user_id = user_id

    def release(self) -> None:
        if self._slots is not None:
            slots, self._slots = self._slots, None
            slots._release(self._user_id)


stream_slots = StreamSlots()
_limiter: RateLimiter | None = None


def rate_limiter() -> RateLimiter:
    """The process's limiter over the ``default`` cache.

    ``caches["default"]`` is context-local under ASGI: every request task
    would build a backend instance of its own. One instance serves the
    process instead (LocMemCache instances share their storage anyway; the
    Redis and Memcached backends pool their connections thread-safely).
    """
    global _limiter
    if _limiter is None:
        _limiter = RateLimiter(caches.create_connection("default"))
    return _limiter


def reset_rate_limiter(**kwargs: Any) -> None:
    """Forget the limiter (CACHES changed, e.g. in tests)."""
    global _limiter
    _limiter = None


class Releasable(Protocol):
    def release(self) -> None: ...


#: (429 response, None) when a limit refuses the request, else (None, its stream slot or None).
Admission = tuple[HttpResponseBase | None, Releasable | None]


async def admit(
    route: ProxyRoute, user_id: object, *, session_key: str | None = None
) -> Admission | None:
    """The request's admission; None (only with ``session_key``) when Django must decide.

    The rate is counted first, so a user hammering while at the stream limit
    uses up their rate too. The caller releases the slot when the stream ends.
    ``session_key`` is a session the caller trusts from a cache (the fast path):
    with shared state it is checked against cluster-wide revocations in the same
    round trip, and None means it ended, or cannot be checked while Redis is
    away: the database decides (CLUSTER-3, CLUSTER-7).
    """
    rate = parse_rate(getattr(settings, route.rate_setting))
    shared = shared_state()
    if shared is not None:
        if shared.link.available:
            stream_limit = settings.GATEWAY_MAX_STREAMS_PER_USER if route.stream else None
            try:
                decision = await shared.limits.admit(
                    bucket=route.bucket,
                    user_id=user_id,
                    count=rate.count,
                    period=rate.period,
                    stream_limit=stream_limit,
                    session_key=session_key,
                )
            except shared.errors as exc:
                shared.link.failed(exc)
            else:
                shared.link.succeeded()
                return _shared_admission(route, decision)
        if session_key is not None:
            return None
    return _decide(route, user_id, await rate_limiter().hit(route.bucket, user_id, rate))


def _shared_admission(route: ProxyRoute, decision: Decision) -> Admission | None:
    if decision.verdict is Verdict.REVOKED:
        return None
    if decision.verdict is Verdict.RATE:
        return _rate_refusal(route, decision.retry_after), None
    if decision.verdict is Verdict.STREAMS:
        return _streams_refusal(), None
    return None, decision.lease


def admit_sync(route: ProxyRoute, user_id: object) -> Admission:
    """``admit`` for sync views (the seed's legacy views): the per-worker counters and slots.

    They are never shared through Redis: a sync worker has no event loop to renew leases on.
    """
    rate = parse_rate(getattr(settings, route.rate_setting))
    return _decide(route, user_id, rate_limiter().hit_sync(route.bucket, user_id, rate))


def _decide(route: ProxyRoute, user_id: object, retry: int | None) -> Admission:
    """The rest of an admission once the rate is counted (``retry``: what ``hit`` said)."""
    if retry is not None:
        return _rate_refusal(route, retry), None
    if not route.stream:
        return None, None
    slot = stream_slots.acquire(user_id, settings.GATEWAY_MAX_STREAMS_PER_USER)
    if slot is None:
        return _streams_refusal(), None
    return None, slot


#: The bucket a 429 of the stream cap is counted in (the rate buckets are the routes').
STREAMS_BUCKET = "streams"


def _rate_refusal(route: ProxyRoute, retry: int) -> HttpResponseBase:
    note_limited(route.bucket)
    return too_many(f"Too many {route.bucket} requests: try again in {retry} s.", retry)


def _streams_refusal() -> HttpResponseBase:
    note_limited(STREAMS_BUCKET)
    limit = settings.GATEWAY_MAX_STREAMS_PER_USER
    return too_many(f"You already have {limit} streams open: close one first.", 1)


def too_many(detail: str, retry_after: int) -> HttpResponseBase:
    return problem(429, detail, headers={"Retry-After": str(retry_after)})
