"""Relaying a service's event stream to the browser, whole events only, never buffered.

The relay owns the upstream response from the moment it is opened: it closes
it however the stream ends (done, failed mid-way, client gone, garbage
collected) and then gives back the user's stream slot.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator

import httpx
from django.http import StreamingHttpResponse

from gateway.lifecycle.draining import DRAIN, RESTARTING
from gateway.observability.exchange import StreamEnd, note_stream_end, note_upstream_failure
from gateway.problems import problem_json_bytes
from gateway.proxy.failures import failure_kind
from gateway.proxy.headers import downstream_response_headers
from gateway.proxy.sse import EventBoundaryBuffer

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
STREAM_UNFINISHED = "The AI service stream ended before it was done."


class EventStreamResponse(StreamingHttpResponse):
    """A relayed event stream that keeps a handle on its relay.

    Django iterates it like any streaming response; the fast path iterates
    and closes ``relay`` itself, so the upstream response is closed the
    moment the browser leaves rather than when the generator is collected.
    """

    def __init__(self, relay: AsyncIterator[bytes] | Iterator[bytes], *, status: int) -> None:
        super().__init__(relay, status=status, content_type=EVENT_STREAM)
        self.relay = relay


def event_stream_response(
    upstream: httpx.Response, relay: AsyncIterator[bytes] | Iterator[bytes]
) -> EventStreamResponse:
    """The browser's response relaying ``upstream``'s event stream (sync relays: WSGI only)."""
    response = EventStreamResponse(relay, status=upstream.status_code)
    for name, value in downstream_response_headers(upstream.headers.multi_items()):
        response[name] = value
    # Whatever the service said: no cache may store it, no proxy may buffer it.
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def open_relay(
    upstream: httpx.Response,
    *,
    path: str = "",
    request_id: str = "",
    on_close: Callable[[], None] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Start the relay of ``upstream``'s body and return it.

    The generator is advanced to its first ``yield`` here, inside its
    try/finally, so even a response Django drops before iterating it (a
    client that disconnects while middleware runs) gets the upstream response
    closed: asyncio's async-generator finalizer calls ``aclose()`` on a
    started generator that is garbage collected. A generator that never
    started would hold its pooled connection forever. ``on_close`` runs
    once the upstream response is closed (it gives back the stream slot).
    """
    relay = _relay(upstream, path=path, request_id=request_id, on_close=on_close)
    await anext(relay)
    return relay


async def _relay(
    upstream: httpx.Response,
    *,
    path: str,
    request_id: str,
    on_close: Callable[[], None] | None,
) -> AsyncGenerator[bytes, None]:
    framing = RelayFraming(path, request_id)
    watch = DRAIN.watch()
    ended: StreamEnd = "client_left"  # unless the stream comes to one of its own ends
    try:
        yield b""  # the priming step of open_relay(); never sent
        chunks = upstream.aiter_bytes()
        try:
            while True:
                # Unbounded until the process drains, then the drain's deadline.
                async with watch.read():
                    chunk = await anext(chunks, None)
                if chunk is None:
                    break
                if ready := framing.feed(chunk):
                    yield ready
        except httpx.HTTPError as exc:
            ended = "error"
            yield framing.broke_off(exc)
            return
        except TimeoutError:
            if not watch.expired:  # not the drain's (httpx raises its own timeouts)
                raise
            ended = "drained"
            yield framing.restarting()
            return
        rest = framing.end()
        ended = "done" if framing.done else "error"
        if rest:
            yield rest
    finally:
        # Runs on normal end, on failure, on client disconnect (CancelledError
        # or GeneratorExit) and on garbage collection: the connection is freed.
        note_stream_end(ended)
        watch.close()
        try:
            await upstream.aclose()
        finally:
            if on_close is not None:
                on_close()


class RelayFraming:
    """What a relay sends, however it reads the upstream body (the async relay and the
    legacy views' sync one): whole events only, one error event if the stream breaks
    off or ends without ``done``."""

    def __init__(self, path: str, request_id: str) -> None:
        self._buffer = EventBoundaryBuffer()
        self._path = path
        self._request_id = request_id

    def feed(self, chunk: bytes) -> bytes:
        """The whole events ``chunk`` completes (often nothing)."""
        return self._buffer.feed(chunk)

    def broke_off(self, exc: httpx.HTTPError) -> bytes:
        """The partial event dropped, the one error event that ends the stream."""
        note_upstream_failure(failure_kind(exc))
        logger.warning(
            "stream %s failed mid-way: %s (request %s)",
            self._path,
            type(exc).__name__,
            self._request_id,
        )
        return self._buffer.error_event(problem_json_bytes(*stream_failure(exc)))

    def restarting(self) -> bytes:
        """The partial event dropped, the one error event of a stream cut by a drain."""
        logger.info("stream %s ended by the drain (request %s)", self._path, self._request_id)
        return self._buffer.error_event(problem_json_bytes(503, RESTARTING))

    @property
    def done(self) -> bool:
        """Whether the upstream stream ended with its done event (not an error event)."""
        return self._buffer.done

    def end(self) -> bytes:
        """The rest after the upstream body ended: its tail, or an error if it never finished."""
        if not self._buffer.finished:
            logger.warning(
                "stream %s ended without a done event (request %s)", self._path, self._request_id
            )
            return self._buffer.error_event(problem_json_bytes(502, STREAM_UNFINISHED))
        return self._buffer.flush()


def stream_failure(exc: httpx.HTTPError) -> tuple[int, str]:
    """(status, detail) of the error event ending a stream that broke off."""
    if isinstance(exc, httpx.TimeoutException):
        return 504, "The AI service stopped sending in time."
    return 502, "The AI service stream broke off."
