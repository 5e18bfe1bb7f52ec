"""Request body size limits per path, answered with a problem+json 413.

Starlette's own limiter answers a declared-too-large body with a plain-text 413 that
replaces whatever the app sends, so we keep this small pure ASGI version instead:
a `Content-Length` over the limit is refused before anything is read, and a body that
grows past the limit (chunked uploads) fails the read with a 413 `HTTPException`,
which the app's handlers turn into problem+json. Memory stays bounded either way.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi_service.core.problems import send_problem


class BodyLimitMiddleware:
    """Refuse bodies larger than the limit of their path (or the default)."""

    def __init__(self, app: ASGIApp, *, limits: Mapping[str, int], default: int) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await send_problem(send, 413, _too_large(limit))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, limited_receive, send)


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None
