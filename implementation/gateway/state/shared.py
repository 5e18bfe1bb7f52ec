"""The process's shared state, built once from settings: None without REDIS_URL.

Without REDIS_URL the Redis client is never imported (it costs each worker half a
second of start-up).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings

from gateway.state.keys import Keys

if TYPE_CHECKING:
    from gateway.state.admission import SharedLimits
    from gateway.state.connection import RedisLink


@dataclass
class SharedState:
    link: RedisLink
    keys: Keys
    limits: SharedLimits
    #: How long a revocation marker lives: past the longest a worker caches a session.
    revocation_ttl: int
    #: What a Redis call raises when Redis is away, slow or restarting (REDIS_ERRORS).
    errors: tuple[type[BaseException], ...]

    def revoke(self, session_key: str) -> None:
        """Mark ``session_key`` ended for every worker (sync: signal receivers run in threads).

        If Redis does not take it, the outage callbacks have dropped this worker's
        cached sessions, and every worker hands sessions to the database until
        Redis is back (CLUSTER-7).
        """
        try:
            self.link.sync_client().set(self.keys.revoked(session_key), 1, ex=self.revocation_ttl)
        except self.errors as exc:
            self.link.failed(exc)

    async def aclose(self) -> None:
        await self.limits.aclose()
        await self.link.aclose()


@cache
def shared_state() -> SharedState | None:
    """This process's shared state (REDIS_URL), or None: limits count in the process."""
    if not settings.REDIS_URL:
        return None
    from gateway.state.admission import SharedLimits
    from gateway.state.connection import REDIS_ERRORS, RedisLink

    link = RedisLink(
        settings.REDIS_URL,
        timeout=settings.GATEWAY_REDIS_TIMEOUT,
        max_connections=settings.GATEWAY_REDIS_MAX_CONNECTIONS,
    )
    keys = Keys(settings.GATEWAY_REDIS_PREFIX)
    limits = SharedLimits(link, keys, lease_seconds=settings.GATEWAY_STREAM_LEASE)
    ttl = int(max(60.0, 2 * settings.GATEWAY_SESSION_CACHE_TTL + 10))
    return SharedState(link, keys, limits, ttl, REDIS_ERRORS)
