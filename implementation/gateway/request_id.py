"""X-Request-ID: keep a well-formed client id, else mint one (GW-PROXY-6).

The id is stored on the request for the proxy to send upstream and is put on
every response that passes through the middleware, errors included.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

REQUEST_ID_HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def resolve_request_id(value: str | None) -> str:
    """Return ``value`` if it is a safe id, else a fresh uuid4 hex."""
    if value is not None and _VALID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def get_request_id(request: HttpRequest) -> str:
    """The request's id; resolves it when the middleware did not run (tests)."""
    request_id = getattr(request, "request_id", None)
    if request_id is None:
        request_id = resolve_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
    return request_id


class RequestIdMiddleware:
    """Async-only middleware, so it adds no thread hop to an async request."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = get_request_id(request)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response
