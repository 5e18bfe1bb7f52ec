"""The OLD sync chat views: the "before" of the async migration.

Kept for backward compatibility (routed at /api/legacy/) and as a
performance baseline. They block a worker thread for the whole service call.
The stream view relays through a *sync* iterator, which is only right under
WSGI (lamla/wsgi.py): under ASGI Django warns ("must consume synchronous
iterators") and buffers the whole stream before sending it. Use the async
views (async_views.py) under ASGI.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse

from gateway.auth.decorators import api_view
from gateway.problems import problem_json_bytes
from gateway.proxy.bodies import read_json_object
from gateway.proxy.failures import (
    MAX_ERROR_BODY,
    bad_upstream_answer,
    transport_failure,
    upstream_error,
)
from gateway.proxy.forward import is_event_stream, json_answer
from gateway.proxy.headers import downstream_response_headers, upstream_request_headers
from gateway.proxy.relay import STREAM_UNFINISHED, stream_failure
from gateway.proxy.sse import EventBoundaryBuffer
from gateway.request_id import get_request_id
from gateway.routes import routes_of
from gateway.upstream.client import NoCookieJar
from gateway.upstream.signing import SigningAuth

_ROUTES = {route.name: route for route in routes_of("legacy")}
_lock = threading.Lock()
_client: httpx.Client | None = None


def get_sync_client() -> httpx.Client:
    """One module-level pooled sync client, shared by the worker's threads."""
    global _client
    with _lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                base_url=settings.SERVICE_BASE_URL,
                timeout=httpx.Timeout(
                    connect=settings.SERVICE_CONNECT_TIMEOUT,
                    read=settings.SERVICE_READ_TIMEOUT,
                    write=settings.SERVICE_WRITE_TIMEOUT,
                    pool=settings.SERVICE_POOL_TIMEOUT,
                ),
                limits=httpx.Limits(
                    max_connections=settings.SERVICE_MAX_CONNECTIONS,
                    max_keepalive_connections=settings.SERVICE_MAX_KEEPALIVE,
                    keepalive_expiry=settings.SERVICE_KEEPALIVE_EXPIRY,
                ),
                trust_env=False,
                follow_redirects=False,
                cookies=NoCookieJar(),
                # Signed like the async client's requests in hmac mode (SEC-7).
                auth=SigningAuth(settings.SERVICE_SECRET)
                if settings.SERVICE_AUTH_MODE == "hmac"
                else None,
            )
        return _client


def _send(request: HttpRequest, path: str, body: bytes) -> httpx.Response:
    headers = upstream_request_headers(
        request.headers.items(),
        secret=settings.SERVICE_SECRET,
        user_id=request.user.pk,  # type: ignore[attr-defined]
        request_id=get_request_id(request),
        content_type="application/json",
    )
    client = get_sync_client()
    return client.send(
        client.build_request("POST", path, content=body, headers=headers), stream=True
    )


def _read_bounded(upstream: httpx.Response, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    for chunk in upstream.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(upstream: httpx.Response, path: str, request_id: str) -> HttpResponse:
    body = None
    if 400 <= upstream.status_code < 500 and upstream.status_code not in (401, 403):
        try:
            body = _read_bounded(upstream, MAX_ERROR_BODY)
        except httpx.HTTPError:
            body = None
    return upstream_error(upstream, body, path=path, request_id=request_id)


@api_view(methods=["POST"], login=True)
def chat(request: HttpRequest) -> HttpResponseBase:
    body, _ = read_json_object(request)
    path, request_id = _ROUTES["chat"].upstream, get_request_id(request)
    try:
        upstream = _send(request, path, body)
    except httpx.HTTPError as exc:
        return transport_failure(exc, path=path, request_id=request_id)
    try:
        if not upstream.is_success:
            return _error(upstream, path, request_id)
        try:
            content = _read_bounded(upstream, settings.SERVICE_MAX_RESPONSE_BODY)
        except httpx.HTTPError as exc:
            return transport_failure(exc, path=path, request_id=request_id)
        return json_answer(upstream, content, path=path, request_id=request_id)
    finally:
        upstream.close()


@api_view(methods=["POST"], login=True)
def chat_stream(request: HttpRequest) -> HttpResponseBase:
    body, _ = read_json_object(request)
    path, request_id = _ROUTES["chat-stream"].upstream, get_request_id(request)
    try:
        upstream = _send(request, path, body)
    except httpx.HTTPError as exc:
        return transport_failure(exc, path=path, request_id=request_id)
    if not upstream.is_success or not is_event_stream(upstream):
        try:
            if upstream.is_success:
                return bad_upstream_answer(
                    path=path, request_id=request_id, reason="answer is not an event stream"
                )
            return _error(upstream, path, request_id)
        finally:
            upstream.close()
    response = StreamingHttpResponse(
        _relay(upstream), status=upstream.status_code, content_type="text/event-stream"
    )
    for name, value in downstream_response_headers(upstream.headers.multi_items()):
        response[name] = value
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _relay(upstream: httpx.Response) -> Iterator[bytes]:
    # A generator has close(), which Django calls from response.close(): the
    # finally below then frees the connection even when the client went away.
    buffer = EventBoundaryBuffer()
    try:
        try:
            for chunk in upstream.iter_bytes():
                ready = buffer.feed(chunk)
                if ready:
                    yield ready
        except httpx.HTTPError as exc:
            yield buffer.error_event(problem_json_bytes(*stream_failure(exc)))
            return
        if not buffer.finished:
            yield buffer.error_event(problem_json_bytes(502, STREAM_UNFINISHED))
            return
        tail = buffer.flush()
        if tail:
            yield tail
    finally:
        upstream.close()


#: The views of the legacy routes, by URL name (apps/chatbot/legacy_urls.py).
views = {"chat": chat, "chat-stream": chat_stream}
