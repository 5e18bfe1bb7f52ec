"""SSE answers, shaped event by event.

Each event goes out in its own ``send`` (one HTTP chunk), so the wire shows event
boundaries at chunk ends. A stream has ``events`` token slots and one final slot for
``done``; ``hold_after``/``drop_after``/``partial_after``/``error_after`` = k act at
slot k, i.e. after k events were sent (k = ``events`` means "instead of done").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Send

from fakes.service.behaviours import Behaviour
from fakes.service.responses import RawHeaders, dumps, problem

EVENT_STREAM = "text/event-stream"
PAD = "."


class StreamCut(Exception):
    """Raised inside the stream on purpose so uvicorn drops the connection mid-body."""


def encode_event(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def token_texts(message: str, count: int) -> list[str]:
    """Default token texts: ``"echo "``, then the message, then ``" 2"``, ``" 3"``, ..."""
    texts = ["echo ", message] + [f" {n}" for n in range(2, count)]
    return texts[:count]


def token_event(text: str, event_size: int | None) -> bytes:
    """A token event, padded with ``PAD`` to ``event_size`` bytes when asked."""
    event = encode_event("token", {"text": text})
    if event_size is not None and len(event) < event_size:
        event = encode_event("token", {"text": text + PAD * (event_size - len(event))})
    return event


def done_event(usage: dict[str, int]) -> bytes:
    return encode_event("done", {"usage": usage})


def error_event() -> bytes:
    return encode_event("error", problem(502, "fake service stream error", "Bad Gateway"))


def stream_headers(content_type: str | None, extra: RawHeaders) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", (content_type or EVENT_STREAM).encode("latin-1")),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        *extra,
    ]


async def _body(send: Send, chunk: bytes, more: bool) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": more})


async def send_stream(
    send: Send,
    plan: Behaviour,
    *,
    status: int,
    message: str,
    usage: Callable[[int], dict[str, int]],
    extra_headers: RawHeaders,
    hold: Callable[[], Awaitable[object]],
) -> None:
    """Send an SSE response shaped by ``plan`` (a behaviour or the default one)."""
    headers = stream_headers(plan.content_type, extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if plan.total_bytes is not None:
        tail = done_event(usage(0)) if plan.done else b""
        await send_filler(send, plan.total_bytes, plan.chunk_size, tail)
        return
    texts = token_texts(message, plan.events)
    for slot in range(plan.events + 1):
        if slot == plan.hold_after:
            await hold()
        if slot > 0 and plan.interval:
            await asyncio.sleep(plan.interval)
        last = slot == plan.events
        if not last:
            event = token_event(texts[slot], plan.event_size)
        else:
            event = done_event(usage(plan.events)) if plan.done else b""
        if slot == plan.drop_after:
            raise StreamCut(f"drop after {slot} events")
        if slot == plan.partial_after:
            half = event if event else token_event("", None)
            await _body(send, half[: max(1, len(half) // 2)], more=True)
            raise StreamCut(f"partial event after {slot} events")
        if slot == plan.error_after:
            await _body(send, error_event(), more=False)
            return
        await _body(send, event, more=not last)


def _filler(size: int) -> bytes:
    """``size`` bytes of SSE comment (ignored by every SSE parser)."""
    if size < 3:
        return b"\n" * size
    return b":" + b"x" * (size - 3) + b"\n\n"


async def send_filler(send: Send, total: int, chunk_size: int, tail: bytes) -> None:
    """Exactly ``total`` body bytes: filler chunks, then ``tail`` if it fits.

    One prebuilt chunk is sent again and again, so memory stays flat; ``send``
    waits while the client is slow, so the pace is the client's.
    """
    if len(tail) > total:
        tail = b""
    full, rest = divmod(total - len(tail), chunk_size)
    chunk = _filler(chunk_size)
    for _ in range(full):
        await _body(send, chunk, more=True)
        # After a disconnect uvicorn's send returns at once without suspending; yield so
        # the disconnect watcher can run and the transfer is recorded as aborted.
        await asyncio.sleep(0)
    if rest:
        await _body(send, _filler(rest), more=True)
    await _body(send, tail, more=False)
