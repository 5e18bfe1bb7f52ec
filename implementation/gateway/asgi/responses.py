"""Answering over ASGI for the fast path: a Django response sent as Django's handler sends it.

The exchange behind an answer is cancelled as soon as the client
disconnects: uvicorn's ``send`` after a disconnect does nothing, so a task
listens for ``http.disconnect`` for the whole exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from django.http import HttpResponseBase

from gateway.asgi.types import Receive, Send


async def send_response(response: HttpResponseBase, send: Send) -> None:
    """Send a Django response over ASGI as Django's handler would, minus its thread hop.

    An ``EventStreamResponse`` is relayed chunk by chunk, and its relay is
    closed here whatever happens (a cancelled send included).
    """
    headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]
    headers += [
        (b"Set-Cookie", cookie.output(header="").encode("ascii").strip())
        for cookie in response.cookies.values()
    ]
    relay = getattr(response, "relay", None)
    try:
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        if not response.streaming:
            await send({"type": "http.response.body", "body": response.content})  # type: ignore[attr-defined]
            return
        async for chunk in relay if relay is not None else aiter(response):  # type: ignore[call-overload]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        if (aclose := getattr(relay, "aclose", None)) is not None:
            await aclose()


async def until_disconnect(work: Awaitable[None], receive: Receive) -> None:
    """Run ``work`` in this task, cancelling it if the client disconnects first."""
    task = asyncio.current_task()
    assert task is not None
    finished = False
    left = False

    async def listen() -> None:
        nonlocal left
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not finished:
                    left = True
                    task.cancel()
                return

    listener = asyncio.ensure_future(listen())
    try:
        await work
    except asyncio.CancelledError:
        if not left:
            raise
        task.uncancel()  # our own cancel: the client left, nothing more to do
    finally:
        finished = True
        listener.cancel()
