"""The worker's way to Redis: an asyncio client per event loop, a sync one, and a breaker.

redis.asyncio pools are bound to the loop that first used them (redis-py #3351), so
the async client is made on the serving loop, after gunicorn forked. Every call is
bounded by GATEWAY_REDIS_TIMEOUT; after a failure the breaker skips Redis for a
second, so an outage costs each request nothing instead of a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

#: What a Redis call may raise when the server is away, slow or restarting.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, asyncio.TimeoutError)


class RedisLink:
    """Clients of one Redis URL for this process, and whether to use them right now."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        max_connections: int = 50,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.max_connections = max_connections
        self.cooldown = cooldown
        self.clock = clock
        self.outages = 0  # how many times Redis was found away (diagnostics, tests)
        self._down_until = 0.0
        self._down = False
        self._lock = threading.Lock()
        self._async: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None
        self._sync: redis.Redis | None = None
        self._on_outage: list[Callable[[], None]] = []

    def on_outage(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when an outage starts and when it ends (e.g. to drop cached sessions).

        At the end too: a revocation made while Redis was away never reached it.
        """
        self._on_outage.append(callback)

    @property
    def available(self) -> bool:
        """False for ``cooldown`` seconds after a failure: skip Redis, fall back."""
        return not self._down or self.clock() >= self._down_until

    def client(self) -> redis.asyncio.Redis:
        """The asyncio client of the running loop (made on first use in that loop)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            # A burst of thousands of admissions shares a few connections: a blocking pool
            # makes a call wait (at most ``timeout``) for one, where the default pool
            # would fail it with "Too many connections" past its cap.
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # One quick retry: a pooled connection that Redis closed on restart.
                retry=AsyncRetry(NoBackoff(), 1),
                health_check_interval=30,
            )
            self._async = (loop, redis.asyncio.Redis(connection_pool=pool))
        return self._async[1]

    def sync_client(self) -> redis.Redis:
        """The thread-safe sync client, for signal receivers running in threads."""
        with self._lock:
            if self._sync is None:
                self._sync = redis.Redis.from_url(
                    self.url,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 1),
                )
            return self._sync

    def failed(self, exc: BaseException) -> None:
        """Redis did not answer: fall back for ``cooldown`` s (logged once per outage)."""
        with self._lock:
            first = not self._down
            self._down = True
            self._down_until = self.clock() + self.cooldown
            if first:
                self.outages += 1
        if first:
            logger.warning(
                "Redis unreachable (%s: %s): limits count per worker and the fast path "
                "checks every session in the database until it is back",
                type(exc).__name__,
                exc,
            )
            self._outage_changed()

    def succeeded(self) -> None:
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                logger.warning("Redis reachable again: limits and revocations are shared")
                self._outage_changed()

    def _outage_changed(self) -> None:
        for callback in self._on_outage:
            callback()

    async def aclose(self) -> None:
        """Close this loop's client (lifespan shutdown)."""
        pair, self._async = self._async, None
        if pair is not None and not pair[0].is_closed():
            await pair[1].aclose(close_connection_pool=True)
