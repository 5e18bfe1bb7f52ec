"""Async proxy view for quiz generation (also served by the ASGI fast path)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from apps.core.decorators import api_view
from apps.core.proxy_views import JsonRoute, fast_path_route, proxy_json

QUIZ = JsonRoute("/quiz/")


@fast_path_route(QUIZ)
@api_view(methods=["POST"], login=True)
async def generate(request: HttpRequest) -> HttpResponseBase:
    return await proxy_json(request, QUIZ)
