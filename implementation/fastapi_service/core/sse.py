"""Relay an LLM stream to the caller as server-sent events, without buffering.

The LLM stream runs in its own task and hands items over through a small queue, so
the response side can send a `: ping` comment during long silences (keeping proxies'
read timeouts quiet) without cancelling a read in the middle of the LLM response.
The response starts only once the LLM produced its first item, so any failure up to
then is answered with its own status (502/503/504) instead of a 200 stream.
Every event is one complete bytes chunk, so event boundaries are chunk boundaries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from fastapi_service.core.llm import LLMError, LLMUnavailable, StreamItem, Usage
from fastapi_service.core.metrics import STREAMS_OPEN
from fastapi_service.core.problems import problem_body

logger = logging.getLogger("fastapi_service")

PING = b": ping\n\n"
QUEUE_SIZE = 64
CLOSE_GRACE = 5.0  # seconds the producer gets to close the LLM response after a cancel
_END = object()


def event(name: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event: compact JSON on a single `data:` line (JSON escapes newlines)."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {payload}\n\n".encode()


def error_event(exc: LLMError) -> bytes:
    return event("error", problem_body(exc.status, exc.detail))


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` with the no-buffering headers, a guaranteed cleanup, and counted
    in `service_streams_open` while it is sent."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        status_code: int = 200,
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(
            content,
            status_code=status_code,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=background,
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        STREAMS_OPEN.inc()  # open while it is sent, however it ends
        try:
            await super().__call__(scope, receive, send)
        finally:
            STREAMS_OPEN.dec()
            # Starlette does not close an iterator it never started; we must.
            if self._on_close is not None:
                await self._on_close()


class Relay:
    """Runs an LLM stream in a task; `start()` waits for its first item, `events()` relays it."""

    def __init__(self, source: AsyncIterator[StreamItem], *, ping_interval: float) -> None:
        self._source = source
        self._ping_interval = ping_interval
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._first: object = None

    async def start(self) -> None:
        """Wait for the LLM's first item; raise its `LLMError` if it fails before that."""
        self._task = asyncio.create_task(self._produce())
        first = await self._queue.get()
        if isinstance(first, LLMError):
            await self.aclose()
            raise first
        self._first = first

    async def _produce(self) -> None:
        try:
            async for item in self._source:
                await self._queue.put(item)
            await self._queue.put(_END)
        except LLMError as exc:
            await self._queue.put(exc)
        except Exception:
            logger.exception("unexpected failure while reading the LLM stream")
            await self._queue.put(LLMUnavailable("The LLM stream failed unexpectedly."))
        finally:
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                await aclose()

    async def events(self) -> AsyncIterator[bytes]:
        """Token events as they arrive, then `done` (or one `error`), pings in between."""
        usage = Usage()
        getter: asyncio.Future[object] | None = None
        item, self._first = self._first, None
        try:
            while True:
                if item is None:
                    if getter is None:
                        getter = asyncio.ensure_future(self._queue.get())
                    done, _ = await asyncio.wait({getter}, timeout=self._ping_interval)
                    if not done:
                        yield PING
                        continue
                    item, getter = getter.result(), None
                if item is _END:
                    break
                if isinstance(item, LLMError):
                    yield error_event(item)
                    return
                if isinstance(item, Usage):
                    usage = item
                elif isinstance(item, str):
                    yield event("token", {"text": item})
                item = None
            yield event("done", {"usage": usage.as_dict()})
        finally:
            if getter is not None:
                getter.cancel()
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the producer, which closes the LLM response (and its connection)."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=CLOSE_GRACE)
