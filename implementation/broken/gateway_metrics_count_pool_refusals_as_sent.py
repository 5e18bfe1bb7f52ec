"""Broken on purpose: a request the full pool refused counts as sent (OPS-METRICS-2)."""

from gateway.upstream import transport
from lamla.asgi import application

_acquire = transport.PoolSlots.acquire


async def _counted_before_the_pool(self: transport.PoolSlots, pool_timeout: float | None) -> None:
    self.requests += 1  # counted whether or not a connection comes free
    await _acquire(self, pool_timeout)
    self.requests -= 1  # the original counted this one already


transport.PoolSlots.acquire = _counted_before_the_pool  # type: ignore[method-assign]
__all__ = ["application"]
