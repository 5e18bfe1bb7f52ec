"""Broken on purpose: the gateway reads the whole stream before relaying it (GW-STREAM-1)."""

from collections.abc import AsyncIterator

from gateway.proxy import forward
from lamla.asgi import application

_open_relay = forward.open_relay


async def _buffering_relay(upstream, **kwargs) -> AsyncIterator[bytes]:  # type: ignore[no-untyped-def]
    relay = await _open_relay(upstream, **kwargs)
    body = b"".join([chunk async for chunk in relay])

    async def once() -> AsyncIterator[bytes]:
        yield body

    return once()


forward.open_relay = _buffering_relay
__all__ = ["application"]
