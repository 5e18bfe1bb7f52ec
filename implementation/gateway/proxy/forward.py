"""One request to the service on behalf of a user: the core both gateway paths share.

``forward()`` admits the request against the user's limits (gateway/limits.py),
sends it over the process's pooled client and turns the answer into the
browser's: a bounded JSON answer, a relayed event stream (gateway/proxy/relay.py),
or a problem (gateway/proxy/failures.py). The Django views
(apps/core/proxy_views.py) and the ASGI fast path (gateway/asgi/fastpath.py)
both call it, so every rule holds on both.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from gateway.limits import Admission, admit
from gateway.observability.exchange import note_upstream, note_user
from gateway.proxy.bodies import OutgoingBody
from gateway.proxy.failures import (
    MAX_ERROR_BODY,
    bad_upstream_answer,
    relays_error_body,
    transport_failure,
    upstream_error,
)
from gateway.proxy.headers import downstream_response_headers, upstream_request_headers
from gateway.proxy.relay import EVENT_STREAM, event_stream_response, open_relay
from gateway.request_id import get_request_id
from gateway.routes import ProxyRoute
from gateway.upstream.client import get_client, service_url
from gateway.upstream.signing import BODY_SHA256


async def forward(
    request: HttpRequest,
    route: ProxyRoute,
    *,
    user_id: object,
    body: OutgoingBody,
    admission: Admission | None = None,
) -> HttpResponseBase:
    """POST ``body`` to ``route``'s service path as ``user_id``; the browser's answer.

    The user's rate limit and stream slots are checked first (a 429 never
    reaches the service). Errors come back as problem responses
    (gateway/proxy/failures.py); a stream comes back as an ``EventStreamResponse``
    whose relay owns the upstream response, and the stream slot, from then on.
    ``admission``: the request was admitted already (the fast path admits before
    it commits to serving, gateway/asgi/fastpath.py).
    """
    note_user(user_id)
    if admission is None:
        admission = await admit(route, user_id)
        assert admission is not None  # None only for a cached session
    refusal, slot = admission
    if refusal is not None:
        return refusal
    handed_off = False
    try:
        response, handed_off = await _exchange(
            request,
            route.upstream,
            user_id=user_id,
            body=body,
            stream=route.stream,
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
        secret=settings.SERVICE_SECRET,
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
    note_upstream(upstream.status_code)

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
            return event_stream_response(upstream, relay), True
        return await _json_response(upstream, path=upstream_path, request_id=request_id), False
    finally:
        if not handed_off:
            await upstream.aclose()


async def _json_response(upstream: httpx.Response, *, path: str, request_id: str) -> HttpResponse:
    try:
        content = await read_bounded(upstream, settings.SERVICE_MAX_RESPONSE_BODY)
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


def declares_more_than(upstream: httpx.Response, limit: int) -> bool:
    """The answer's Content-Length says it is over ``limit`` bytes: not worth reading."""
    declared = upstream.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > limit


async def read_bounded(upstream: httpx.Response, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds ``limit`` bytes."""
    if declares_more_than(upstream, limit):
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
    if not relays_error_body(upstream.status_code):
        return None  # never relayed, so never read
    try:
        return await read_bounded(upstream, MAX_ERROR_BODY)
    except httpx.HTTPError:
        return None
