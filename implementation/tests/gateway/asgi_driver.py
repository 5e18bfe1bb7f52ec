"""Drive an ASGI app one request at a time, as uvicorn would (scope, receive, send).

Django's test client bypasses the ASGI layer (and so the fast path and
disconnects); these helpers speak ASGI directly, in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

Message = dict[str, Any]
App = Callable[[dict[str, Any], Callable[[], Awaitable[Message]], Callable[..., Any]], Any]

HOST = "127.0.0.1:8000"


@dataclass
class Browser:
    """A logged-in browser's cookies and CSRF token."""

    session_key: str
    csrf_secret: str = field(default_factory=_get_new_csrf_string)

    @property
    def csrf_token(self) -> str:
        return _mask_cipher_secret(self.csrf_secret)

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {
            "host": HOST,
            "content-type": "application/json",
            "cookie": f"csrftoken={self.csrf_secret}; sessionid={self.session_key}",
            "x-csrftoken": self.csrf_token,
        }
        headers.update({name.replace("_", "-").lower(): value for name, value in extra.items()})
        return headers


@dataclass
class Result:
    status: int | None
    headers: list[tuple[str, str]]
    body: bytes
    messages: list[Message]

    def header_set(self, ignore: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        return sorted((name.lower(), value) for name, value in self.headers if name not in ignore)


def scope(
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]],
    *,
    scheme: str = "http",
    query_string: bytes = b"",
) -> dict:
    pairs = headers.items() if isinstance(headers, dict) else headers
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "root_path": "",
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(
    app: App,
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes | list[bytes] = b"",
    *,
    disconnect: asyncio.Event | None = None,
    scheme: str = "http",
    query_string: bytes = b"",
    messages: list[Message] | None = None,
) -> Result:
    """One request; ``body`` as one or several ``http.request`` messages.

    Once the body is sent, ``receive`` waits for the response to end or for
    ``disconnect`` to be set, then says ``http.disconnect`` (uvicorn's way).
    ``messages`` collects what the app sends, as it sends it.
    """
    chunks = body if isinstance(body, list) else [body]
    incoming: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]
    finished = asyncio.Event()
    gone = disconnect or asyncio.Event()
    messages = [] if messages is None else messages

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        waiters = [asyncio.ensure_future(finished.wait()), asyncio.ensure_future(gone.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if gone.is_set():
            return  # uvicorn: a send after a disconnect does nothing
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    await app(scope(method, path, headers, scheme=scheme, query_string=query_string), receive, send)
    start = next((m for m in messages if m["type"] == "http.response.start"), {})
    return Result(
        status=start.get("status"),
        headers=[
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in start.get("headers", [])
        ],
        body=b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body"),
        messages=messages,
    )


class Recorder:
    """Wraps an ASGI app and counts the requests that reach it."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.app(scope, receive, send)
