"""Broken on purpose: no body guard, so Django reads a whole body before refusing it (LIMIT-1)."""

from gateway.asgi.body_limit import BodyLimit
from lamla.asgi import application


async def _pass_through(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await self.app(scope, receive, send)


BodyLimit.__call__ = _pass_through  # type: ignore[method-assign]
__all__ = ["application"]
