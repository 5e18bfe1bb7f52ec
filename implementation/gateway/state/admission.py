"""One Redis round trip per admission: revocation, rate window and stream lease in a Lua script.

Concurrent admissions share their round trip (gateway/state/batching.py).
The script runs atomically in Redis, on Redis's clock (hosts' clocks may differ):
a revoked session is refused first; the rate is a fixed window counted with INCR,
its key expiring with its window (EXPIRE when the count is 1); a stream takes a
lease in the user's sorted set (member: lease id, score: expiry) after expired
leases are dropped. A worker renews its leases every third of
GATEWAY_STREAM_LEASE, so a worker that dies, even by SIGKILL, holds its slots at
most that long.
"""

from __future__ import annotations

import asyncio
import secrets

from redis.commands.core import AsyncScript

from gateway.state.batching import ScriptBatcher
from gateway.state.connection import REDIS_ERRORS, RedisLink
from gateway.state.decision import Decision, Verdict
from gateway.state.keys import Keys

ADMIT = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return {0, 0}
end
local limit, period = tonumber(ARGV[2]), tonumber(ARGV[3])
local window = math.floor(now / period)
local counter = KEYS[1] .. ':' .. window
local count = redis.call('INCR', counter)
if count == 1 then
  redis.call('EXPIRE', counter, period + 1)
end
if count > limit then
  return {1, math.max(1, math.ceil((window + 1) * period - now))}
end
if ARGV[4] == '1' then
  local lease = tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
    return {2, 1}
  end
  redis.call('ZADD', KEYS[2], now + lease, ARGV[7])
  redis.call('EXPIRE', KEYS[2], math.ceil(lease) + 1)
end
return {3, 0}
"""

RENEW = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(lease) + 1)
end
return #KEYS
"""


RELEASE = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""


class SharedLimits:
    """Cluster-wide admission and the leases this worker holds."""

    def __init__(self, link: RedisLink, keys: Keys, *, lease_seconds: float) -> None:
        self.link = link
        self.keys = keys
        self.lease_seconds = lease_seconds
        self._leases: dict[str, str] = {}  # lease id -> its sorted set, while open
        # Batched: a burst's thousands of admissions, and of releases as its streams end
        # together, share round trips and a connection or two.
        self._admit = ScriptBatcher(link, ADMIT)
        self._release_batch = ScriptBatcher(link, RELEASE)
        self._renew: dict[object, AsyncScript] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[object]] = set()

    def _renew_script(self) -> AsyncScript:
        client = self.link.client()
        script = self._renew.get(id(client))
        if script is None:
            self._renew.clear()  # one client (one loop) at a time
            script = self._renew[id(client)] = client.register_script(RENEW)
        return script

    async def admit(
        self,
        *,
        bucket: str,
        user_id: object,
        count: int,
        period: int,
        stream_limit: int | None,
        session_key: str | None,
    ) -> Decision:
        """One round trip (shared with concurrent admissions); REDIS_ERRORS when Redis is away."""
        lease_id = secrets.token_hex(8) if stream_limit is not None else ""
        streams = self.keys.streams(user_id)
        verdict, value = await self._admit(
            [
                self.keys.rate(bucket, user_id, period),
                streams,
                self.keys.revoked(session_key) if session_key else streams,
            ],
            [
                "1" if session_key else "0",
                count,
                period,
                "1" if stream_limit is not None else "0",
                stream_limit or 0,
                self.lease_seconds,
                lease_id,
            ],
        )
        verdict = Verdict(int(verdict))
        if verdict is not Verdict.ADMITTED or stream_limit is None:
            return Decision(verdict, int(value))
        self._leases[lease_id] = streams
        self._ensure_renewer()
        return Decision(verdict, lease=Lease(self, streams, lease_id))

    def _release(self, streams: str, lease_id: str) -> None:
        """Give a lease back now; if Redis does not take it, it expires by itself."""
        if self._leases.pop(lease_id, None) is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop (interpreter shutdown): let it expire
            return
        task = loop.create_task(self._zrem(streams, lease_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _zrem(self, streams: str, lease_id: str) -> None:
        if not self.link.available:
            return
        try:
            await self._release_batch([streams], [lease_id])
        except REDIS_ERRORS as exc:
            self.link.failed(exc)

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew_forever())

    async def _renew_forever(self) -> None:
        """Renew this worker's open leases every third of a lease, until none is left."""
        interval = self.lease_seconds / 3
        while self._leases:
            await asyncio.sleep(interval)  # a period, not a wait for another task
            await self.renew()

    async def renew(self) -> None:
        leases = list(self._leases.items())
        if not leases or not self.link.available:
            return
        renew = self._renew_script()
        try:
            await renew(
                keys=[streams for _, streams in leases],
                args=[self.lease_seconds, *(lease_id for lease_id, _ in leases)],
            )
        except REDIS_ERRORS as exc:
            self.link.failed(exc)
        else:
            self.link.succeeded()

    @property
    def open_leases(self) -> int:
        return len(self._leases)

    async def aclose(self) -> None:
        """Stop renewing and give back every lease still held (lifespan shutdown)."""
        if self._renewer is not None:
            self._renewer.cancel()
        for lease_id, streams in list(self._leases.items()):
            self._release(streams, lease_id)
        if self._pending:
            await asyncio.wait(self._pending, timeout=self.link.timeout)


class Lease:
    """One open stream's slot in Redis; ``release()`` may be called any number of times."""

    __slots__ = ("_id", "_limits", "_streams")

    def __init__(self, limits: SharedLimits, streams: str, lease_id: str) -> None:
        self._limits = limits
        self._streams = streams
        self._id = lease_id

    def release(self) -> None:
        self._limits._release(self._streams, self._id)
