"""Async proxy views for chat: the browser-facing half of /chatbot/*.

Each view checks what the gateway owns (method, session, CSRF, body shape
and size) and hands the body to the service unchanged.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from apps.core.bodies import read_json_object, read_upload
from apps.core.decorators import api_view, csrf_protect_raw_body
from apps.core.proxy_views import proxy


@api_view(methods=["POST"], login=True)
async def chat(request: HttpRequest) -> HttpResponseBase:
    body, _ = read_json_object(request)
    return await proxy(
        request, "/chatbot/", body=body, content_type="application/json", stream=False
    )


@api_view(methods=["POST"], login=True)
async def chat_stream(request: HttpRequest) -> HttpResponseBase:
    body, _ = read_json_object(request)
    return await proxy(
        request, "/chatbot/stream/", body=body, content_type="application/json", stream=True
    )


@csrf_protect_raw_body
@api_view(methods=["POST"], login=True)
async def chat_file(request: HttpRequest) -> HttpResponseBase:
    body, size, content_type = await read_upload(request)
    return await proxy(
        request,
        "/chatbot/file/",
        body=body,
        content_type=content_type,
        content_length=size,
        stream=False,
    )
