"""A tiny ASGI wrapper that gives Django a lifespan.

Django answers only HTTP scopes (ticket #31508), so the startup check and the
shutdown of the pooled clients live here; every other scope goes to Django.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.asgi.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


class LifespanApp:
    def __init__(self, app: ASGIApp, *, on_startup: Hook, on_shutdown: Hook) -> None:
        self.app = app
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.on_startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.on_shutdown()
                except Exception as exc:
                    logger.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return
