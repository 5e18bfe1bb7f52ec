"""Async proxy view for quiz generation."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from apps.core.bodies import read_json_object
from apps.core.decorators import api_view
from apps.core.proxy_views import proxy


@api_view(methods=["POST"], login=True)
async def generate(request: HttpRequest) -> HttpResponseBase:
    body, _ = read_json_object(request)
    return await proxy(request, "/quiz/", body=body, content_type="application/json", stream=False)
