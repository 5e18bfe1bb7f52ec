"""The generic proxy shared by the chat, stream, file and quiz views and the fast path.

One request to the service over the process's pooled client
(apps/core/async_client.py); the answer is either read (bounded) and returned,
or relayed chunk by chunk as an async iterator, never buffered whole.
``forward()`` is the one core: the Django views call it through ``proxy()``
(which asks Django's session for the user) and the ASGI fast path
(apps/core/fastpath.py) calls it directly with the user it verified, so the
per-user limits it checks first (apps/core/limits.py) hold on both paths.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from apps.core.async_client import get_client, service_url
from apps.core.bodies import JSON, OutgoingBody, read_json_object
from apps.core.failures import (
    MAX_ERROR_BODY,
    bad_upstream_answer,
    transport_failure,
    upstream_error,
)
from apps.core.headers import downstream_response_headers, upstream_request_headers
from apps.core.limits import admit
from apps.core.problems import problem_json_bytes
from apps.core.request_id import get_request_id
from apps.core.signing import BODY_SHA256
from apps.core.sse import EventBoundaryBuffer

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
STREAM_UNFINISHED = "The AI service stream ended before it was done."
V = TypeVar("V", bound=Callable[..., Any])


@dataclass(frozen=True)
class JsonRoute:
    """A browser route whose JSON object body goes to ``upstream`` unchanged."""

    upstream: str
    stream: bool = False


@dataclass(frozen=True)
class UploadRoute:
    """A browser route whose multipart upload goes to ``upstream``, checked and rebuilt."""

    upstream: str


Route = JsonRoute | UploadRoute


def fast_path_route(route: Route) -> Callable[[V], V]:
    """Mark a view as serving ``route``: the ASGI fast path may then serve it too.

    The fast path finds the view through Django's URL resolver and serves the
    request only when the view carries this mark (``view.fast_path_route``).
    """

    def mark(view: V) -> V:
        view.fast_path_route = route  # type: ignore[attr-defined]
        return view

    return mark


async def proxy_json(request: HttpRequest, route: JsonRoute) -> HttpResponseBase:
    """The body of a JSON route's view: check the body (415/413/400), then proxy it."""
    raw, _ = read_json_object(request)
    return await proxy(request, route.upstream, OutgoingBody(raw, JSON), stream=route.stream)


async def proxy(
    request: HttpRequest, upstream_path: str, body: OutgoingBody, *, stream: bool
) -> HttpResponseBase:
    """POST ``body`` to the service at ``upstream_path`` on behalf of the session user."""
    user = await request.auser()  # type: ignore[attr-defined]
    return await forward(request, upstream_path, user_id=user.pk, body=body, stream=stream)


async def forward(
    request: HttpRequest,
    upstream_path: str,
    *,
    user_id: object,
    body: OutgoingBody,
    stream: bool,
) -> HttpResponseBase:
    """POST ``body`` to the service as ``user_id``; the browser's answer.

    The user's rate limit and stream slots are checked first (a 429 never
    reaches the service). Errors come back as problem responses
    (apps/core/failures.py); a stream comes back as an ``EventStreamResponse``
    whose relay owns the upstream response, and the stream slot, from then on.
    """
    refusal, slot = await admit(request, user_id, stream=stream)
    if refusal is not None:
        return refusal
    handed_off = False
    try:
        response, handed_off = await _exchange(
            request,
            upstream_path,
            user_id=user_id,
            body=body,
            stream=stream,
            on_close=None if slot is None else slot.release,
        )
        return response
    finally:
        if slot is not None and not handed_off:
            slot.release()


async def _exchange(
    request: HttpRequest,
    upstream_path: str,
    *,
    user_id: object,
    body: OutgoingBody,
    stream: bool,
    on_close: Callable[[], None] | None,
) -> tuple[HttpResponseBase, bool]:
    """(the browser's answer, whether a relay took over the upstream response)."""
    request_id = get_request_id(request)
    headers = upstream_request_headers(
        request.headers.items(),
        secret=settings.FASTAPI_SECRET,
        user_id=user_id,
        request_id=request_id,
        content_type=body.content_type,
        client_address=request.META.get("REMOTE_ADDR"),
    )
    if body.length is not None:
        # Forward a streamed body with its length rather than chunked.
        headers.append(("content-length", str(body.length)))
    client = get_client()
    outgoing = client.build_request(
        "POST",
        service_url(upstream_path),
        content=body.content,
        headers=headers,
        extensions={} if body.sha256 is None else {BODY_SHA256: body.sha256},
    )
    try:
        upstream = await client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        return transport_failure(exc, path=upstream_path, request_id=request_id), False

    handed_off = False
    try:
        if not upstream.is_success:
            error_body = await _read_error_body(upstream)
            answer = upstream_error(upstream, error_body, path=upstream_path, request_id=request_id)
            return answer, False
        if stream:
            if not is_event_stream(upstream):
                answer = bad_upstream_answer(
                    path=upstream_path,
                    request_id=request_id,
                    reason="answer is not an event stream",
                )
                return answer, False
            relay = await open_relay(
                upstream, path=upstream_path, request_id=request_id, on_close=on_close
            )
            handed_off = True  # from here on the relay closes the upstream response
            return _streaming_response(upstream, relay), True
        return await _json_response(upstream, path=upstream_path, request_id=request_id), False
    finally:
        if not handed_off:
            await upstream.aclose()


async def _json_response(upstream: httpx.Response, *, path: str, request_id: str) -> HttpResponse:
    try:
        content = await read_bounded(upstream, settings.FASTAPI_MAX_RESPONSE_BODY)
    except httpx.HTTPError as exc:
        return transport_failure(exc, path=path, request_id=request_id)
    return json_answer(upstream, content, path=path, request_id=request_id)


def json_answer(
    upstream: httpx.Response, content: bytes | None, *, path: str, request_id: str
) -> HttpResponse:
    """The client's response for a service answer read with a bound (None: over it).

    Shared with the legacy sync views, which read the body their own way.
    """
    if content is None:
        return bad_upstream_answer(path=path, request_id=request_id, reason="answer too large")
    if not is_json(upstream):  # FAULT-4: JSON under another label is not a JSON answer
        return bad_upstream_answer(path=path, request_id=request_id, reason="answer is not JSON")
    try:
        json.loads(content)
    except (ValueError, RecursionError):
        return bad_upstream_answer(path=path, request_id=request_id, reason="answer is not JSON")
    response = HttpResponse(content, status=upstream.status_code, content_type="application/json")
    for name, value in downstream_response_headers(upstream.headers.multi_items()):
        response[name] = value
    return response


def is_json(upstream: httpx.Response) -> bool:
    """``application/json`` or a ``+json`` type (``application/problem+json``)."""
    media_type = upstream.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def is_event_stream(upstream: httpx.Response) -> bool:
    content_type = upstream.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == EVENT_STREAM


class EventStreamResponse(StreamingHttpResponse):
    """A relayed event stream that keeps a handle on its relay.

    Django iterates it like any streaming response; the fast path iterates
    and closes ``relay`` itself, so the upstream response is closed the
    moment the browser leaves rather than when the generator is collected.
    """

    def __init__(self, relay: AsyncIterator[bytes], *, status: int) -> None:
        super().__init__(relay, status=status, content_type=EVENT_STREAM)
        self.relay = relay


def _streaming_response(upstream: httpx.Response, relay: AsyncIterator[bytes]) -> HttpResponseBase:
    response = EventStreamResponse(relay, status=upstream.status_code)
    for name, value in downstream_response_headers(upstream.headers.multi_items()):
        response[name] = value
    # Whatever the service said: no cache may store it, no proxy may buffer it.
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def read_bounded(upstream: httpx.Response, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds ``limit`` bytes."""
    declared = upstream.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in upstream.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_error_body(upstream: httpx.Response) -> bytes | None:
    if not 400 <= upstream.status_code < 500 or upstream.status_code in (401, 403):
        return None  # never relayed, so never read
    try:
        return await read_bounded(upstream, MAX_ERROR_BODY)
    except httpx.HTTPError:
        return None


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
    buffer = EventBoundaryBuffer()
    try:
        yield b""  # the priming step of open_relay(); never sent
        try:
            async for chunk in upstream.aiter_bytes():
                ready = buffer.feed(chunk)
                if ready:
                    yield ready
        except httpx.HTTPError as exc:
            # Mid-stream failure: drop the partial event, end with one error event.
            status, detail = stream_failure(exc)
            logger.warning(
                "stream %s failed mid-way: %s (request %s)", path, type(exc).__name__, request_id
            )
            yield buffer.error_event(problem_json_bytes(status, detail))
            return
        if not buffer.finished:
            logger.warning("stream %s ended without a done event (request %s)", path, request_id)
            yield buffer.error_event(problem_json_bytes(502, STREAM_UNFINISHED))
            return
        tail = buffer.flush()
        if tail:
            yield tail
    finally:
        # Runs on normal end, on failure, on client disconnect (CancelledError
        # or GeneratorExit) and on garbage collection: the connection is freed.
        try:
            await upstream.aclose()
        finally:
            if on_close is not None:
                on_close()


def stream_failure(exc: httpx.HTTPError) -> tuple[int, str]:
    """(status, detail) of the error event ending a stream that broke off."""
    if isinstance(exc, httpx.TimeoutException):
        return 504, "The AI service stopped sending in time."
    return 502, "The AI service stream broke off."
