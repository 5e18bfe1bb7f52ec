"""A pure ASGI guard: at most a route's body limit (+1 byte) is read from the client.

Django's ASGI handler reads a whole body before any view runs, so the guard
stops pulling near the limit (a declared length over it reaches Django as an
empty body; a chunked one is cut one byte past it), lets Django give its own
413, and closes the connection after the answer (README, "A hostile world").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from gateway.asgi.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: at most ``limit`` (+1) body bytes per request reach ``app``.

    ``limits`` maps exact paths to their own limit (the upload route);
    every other HTTP path gets ``default``.
    """

    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[str, int] | None = None):
        self.app = app
        self.default = default
        self.limits = dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = _content_length(scope)
        if declared is not None and declared <= limit:
            # The server delivers no more than the declared length.
            await self.app(scope, receive, send)
            return
        guard = _Guard(receive, send, limit, refuse=declared is not None)
        await self.app(scope, guard.receive, guard.send)


def _content_length(scope: Scope) -> int | None:
    """The declared body length; None when absent or not a plain number (counted then)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class _Guard:
    """The receive/send pair of one request whose body may be cut short."""

    def __init__(self, receive: Receive, send: Send, limit: int, *, refuse: bool) -> None:
        self._receive = receive
        self._send = send
        self._left = limit + 1  # one byte past the limit tells the view it is too big
        self._refuse = refuse  # declared over the limit: read nothing at all
        self._ended = False  # the app was told the body ended
        self.cut = False  # ...before the client sent all of it
        self._responded = asyncio.Event()

    async def receive(self) -> Message:
        if self._ended:
            if self.cut:
                # Django listens for a disconnect after the body; pulling from
                # the client now would read the rest of the body. The response
                # ends the request instead.
                await self._responded.wait()
                return {"type": "http.disconnect"}
            return await self._receive()
        if self._refuse:
            return self._end(b"")
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) < self._left or (len(body) == self._left and not more):
            self._left -= len(body)
            if not more:
                self._ended = True
            return message
        return self._end(body[: self._left])

    def _end(self, body: bytes) -> Message:
        self._ended = self.cut = True
        self._left = 0
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, message: Message) -> None:
        if self.cut and message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        try:
            await self._send(message)
        finally:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._responded.set()
