"""The seed's OLD sync chat views at /api/legacy/: the "before" of the async migration.

Routed only when GATEWAY_LEGACY_VIEWS is on (apps/chatbot/legacy_urls.py), for
backward compatibility and as the perf baseline ``legacy-sync`` (gunicorn,
lamla/wsgi.py). With GATEWAY_SYNC_VIEWS on, ``legacy_view()`` also serves every
proxied JSON and stream route (/api/chat/, /api/quiz/generate/, ...; lamla/urls.py),
so the suites judge the seed's sync deployment on the standard routes
(legacy_views.toml). They keep the async routes' rules: the same per-user limits
(``admit_sync``), the same headers both ways and the same answers (gateway/proxy/),
but each request blocks a thread for the whole service call. The stream is a sync
iterator under WSGI; under ASGI it is pulled chunk by chunk in a worker thread,
so it is never buffered either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncGenerator, Callable, Generator

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from gateway.auth.decorators import api_view
from gateway.limits import admit_sync
from gateway.proxy.bodies import JSON, read_json_object
from gateway.proxy.failures import (
    MAX_ERROR_BODY,
    bad_upstream_answer,
    relays_error_body,
    transport_failure,
    upstream_error,
)
from gateway.proxy.forward import declares_more_than, is_event_stream, json_answer
from gateway.proxy.headers import upstream_request_headers
from gateway.proxy.relay import RelayFraming, event_stream_response
from gateway.request_id import get_request_id
from gateway.routes import ProxyRoute, routes_of
from gateway.upstream.client import client_options

#: The longest response header name or value taken from the service; a longer one is a
#: 502 (FAULT-4), as for the async views, whose transport (aiohttp) refuses it there.
MAX_HEADER_FIELD = 8190

_lock = threading.Lock()
_client: httpx.Client | None = None


def get_sync_client() -> httpx.Client:
    """One module-level pooled sync client, shared by the worker's threads."""
    global _client
    with _lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(**client_options())  # signed too in hmac mode (SEC-7)
        return _client


def legacy_view(route: ProxyRoute) -> Callable[[HttpRequest], HttpResponseBase]:
    """The sync view serving ``route``, a JSON or a stream route (never an upload: JSON only)."""

    @api_view(methods=["POST"], login=True)
    def view(request: HttpRequest) -> HttpResponseBase:
        return _proxy(request, route)

    view.__name__ = view.__qualname__ = route.name.replace("-", "_")
    return view


#: The views of the legacy routes, by URL name (apps/chatbot/legacy_urls.py).
views = {route.name: legacy_view(route) for route in routes_of("legacy")}
#: The seed's names for them.
chat, chat_stream = views["chat"], views["chat-stream"]


def _proxy(request: HttpRequest, route: ProxyRoute) -> HttpResponseBase:
    """The sync twin of forward() (gateway/proxy/forward.py), for a JSON or stream route."""
    body, _ = read_json_object(request)  # 415/413/400 before anything is counted or sent
    refusal, slot = admit_sync(route, request.user.pk)  # type: ignore[attr-defined]
    if refusal is not None:
        return refusal
    handed_off = False
    try:
        upstream = _send(request, route, body)
        if isinstance(upstream, HttpResponseBase):
            return upstream
        path, request_id = route.upstream, get_request_id(request)
        try:
            if _oversized_header(upstream):
                return bad_upstream_answer(
                    path=path, request_id=request_id, reason="a response header over 8 KiB"
                )
            if not upstream.is_success:
                return _error(upstream, path, request_id)
            if not route.stream:
                try:
                    content = _read_bounded(upstream, settings.SERVICE_MAX_RESPONSE_BODY)
                except httpx.HTTPError as exc:
                    return transport_failure(exc, path=path, request_id=request_id)
                return json_answer(upstream, content, path=path, request_id=request_id)
            if not is_event_stream(upstream):
                return bad_upstream_answer(
                    path=path, request_id=request_id, reason="answer is not an event stream"
                )
            relay = _open_relay(
                upstream,
                path=path,
                request_id=request_id,
                on_close=None if slot is None else slot.release,
            )
            handed_off = True  # from here on the relay closes upstream and gives back the slot
        finally:
            if not handed_off:
                upstream.close()
        if isinstance(request, ASGIRequest):
            return event_stream_response(upstream, _pulled_in_threads(relay, upstream))
        return event_stream_response(upstream, relay)  # WSGI: a sync iterator
    finally:
        if slot is not None and not handed_off:
            slot.release()


def _send(request: HttpRequest, route: ProxyRoute, body: bytes) -> httpx.Response | HttpResponse:
    """The service's answer, body unread (streamed); or the problem of a transport failure."""
    request_id = get_request_id(request)
    headers = upstream_request_headers(
        request.headers.items(),
        secret=settings.SERVICE_SECRET,
        user_id=request.user.pk,  # type: ignore[attr-defined]
        request_id=request_id,
        content_type=JSON,
        client_address=request.META.get("REMOTE_ADDR"),
    )
    client = get_sync_client()
    outgoing = client.build_request("POST", route.upstream, content=body, headers=headers)
    try:
        return client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        return transport_failure(exc, path=route.upstream, request_id=request_id)


def _oversized_header(upstream: httpx.Response) -> bool:
    """Whether a header of ``upstream`` is longer than the async views' transport takes."""
    return any(
        len(name) > MAX_HEADER_FIELD or len(value) > MAX_HEADER_FIELD
        for name, value in upstream.headers.raw
    )


def _read_bounded(upstream: httpx.Response, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds ``limit`` bytes (sync twin of read_bounded)."""
    if declares_more_than(upstream, limit):
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in upstream.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(upstream: httpx.Response, path: str, request_id: str) -> HttpResponse:
    """A non-2xx answer mapped (GW-PROXY-7); only a relayed 4xx's body is read, bounded."""
    body = None
    if relays_error_body(upstream.status_code):
        try:
            body = _read_bounded(upstream, MAX_ERROR_BODY)
        except httpx.HTTPError:
            body = None
    return upstream_error(upstream, body, path=path, request_id=request_id)


def _open_relay(
    upstream: httpx.Response, *, path: str, request_id: str, on_close: Callable[[], None] | None
) -> Generator[bytes, None, None]:
    """Start the relay of ``upstream``'s body and return it (the sync twin of open_relay).

    Advanced into its try/finally here, so whatever ends it, ``close()`` from
    the server (Django calls it when the response is done or the client is gone)
    or garbage collection, it closes ``upstream`` and then calls ``on_close``.
    """
    relay = _relay(upstream, path, request_id, on_close)
    next(relay)
    return relay


def _relay(
    upstream: httpx.Response, path: str, request_id: str, on_close: Callable[[], None] | None
) -> Generator[bytes, None, None]:
    framing = RelayFraming(path, request_id)
    try:
        yield b""  # the priming step of _open_relay(); never sent
        try:
            for chunk in upstream.iter_bytes():
                if ready := framing.feed(chunk):
                    yield ready
        except httpx.HTTPError as exc:
            yield framing.broke_off(exc)
            return
        if rest := framing.end():
            yield rest
    finally:
        try:
            upstream.close()
        finally:
            if on_close is not None:
                on_close()


async def _pulled_in_threads(
    relay: Generator[bytes, None, None], upstream: httpx.Response
) -> AsyncGenerator[bytes, None]:
    """``relay`` for an ASGI server: each chunk pulled in a worker thread as it comes.

    When the client leaves, Django cancels the wait for the next chunk; the
    thread still blocked on the service is woken by shutting the connection's
    socket, and the relay is closed, so the upstream request and the stream
    slot are given back at once.
    """
    pull = sync_to_async(next, thread_sensitive=False)
    pending: asyncio.Future[bytes | None] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(pull(relay, None))
            chunk = await asyncio.shield(pending)  # a cancel stops the wait, not the thread
            if chunk is None:
                return
            yield chunk
    finally:
        if pending is not None and not pending.done():
            _interrupt(upstream)
            await asyncio.wait([pending])
        await sync_to_async(relay.close, thread_sensitive=False)()


def _interrupt(upstream: httpx.Response) -> None:
    """Wake a thread blocked reading ``upstream``: shut its socket down (closing would not)."""
    stream = upstream.extensions.get("network_stream")
    sock = None if stream is None else stream.get_extra_info("socket")
    if sock is not None and not upstream.is_closed:  # closed: the socket may be pooled again
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
