"""Async proxy views for chat: the browser-facing half of /chatbot/*.

Each view checks what the gateway owns (method, session, CSRF, body shape
and size) and hands the body to the service. The three routes are also
served by the ASGI fast path (apps/core/fastpath.py), which runs the same
checks without Django's per-request thread hops (for the upload, as its
body arrives).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from apps.core.bodies import read_upload
from apps.core.decorators import api_view, csrf_protect_raw_body
from apps.core.proxy_views import JsonRoute, UploadRoute, fast_path_route, proxy, proxy_json

CHAT = JsonRoute("/chatbot/")
CHAT_STREAM = JsonRoute("/chatbot/stream/", stream=True)
CHAT_FILE = UploadRoute("/chatbot/file/")


@fast_path_route(CHAT)
@api_view(methods=["POST"], login=True)
async def chat(request: HttpRequest) -> HttpResponseBase:
    return await proxy_json(request, CHAT)


@fast_path_route(CHAT_STREAM)
@api_view(methods=["POST"], login=True)
async def chat_stream(request: HttpRequest) -> HttpResponseBase:
    return await proxy_json(request, CHAT_STREAM)


@fast_path_route(CHAT_FILE)
@csrf_protect_raw_body
@api_view(methods=["POST"], login=True)
async def chat_file(request: HttpRequest) -> HttpResponseBase:
    return await proxy(request, CHAT_FILE.upstream, await read_upload(request), stream=False)
