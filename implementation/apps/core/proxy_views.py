"""Generic proxy views: the Django view of every route in gateway/routes.py.

A view checks what the gateway owns (method, session, CSRF, body shape and
size), then hands the body to ``forward()`` (gateway/proxy/forward.py), the
core it shares with the ASGI fast path. The apps' ``async_views`` modules
hold the views built here, and their URLconfs route to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponseBase
from django.urls import URLPattern, path

from gateway.auth.decorators import api_view, csrf_protect_raw_body
from gateway.proxy.bodies import JSON, OutgoingBody, read_json_object, read_upload
from gateway.proxy.forward import forward
from gateway.routes import Kind, ProxyRoute, routes_of

View = Callable[..., Any]


def proxy_view(route: ProxyRoute) -> View:
    """The async view serving ``route``; ``view.proxy_route`` names it for the fast path."""
    if route.kind is Kind.UPLOAD:

        async def upload_view(request: HttpRequest) -> HttpResponseBase:
            return await proxy(request, route, await read_upload(request))

        view = csrf_protect_raw_body(api_view(methods=["POST"], login=True)(upload_view))
    else:

        async def json_view(request: HttpRequest) -> HttpResponseBase:
            raw, _ = read_json_object(request)  # 415/413/400 before anything is sent
            return await proxy(request, route, OutgoingBody(raw, JSON))

        view = api_view(methods=["POST"], login=True)(json_view)
    view.__name__ = view.__qualname__ = route.name.replace("-", "_")
    view.proxy_route = route  # type: ignore[attr-defined]
    return view


async def proxy(request: HttpRequest, route: ProxyRoute, body: OutgoingBody) -> HttpResponseBase:
    """POST ``body`` to ``route``'s service path on behalf of the session user.

    With a connection pool (DATABASE_URL), the request's database connection goes
    back to it before the service is called: Django would hold it until the
    response ends, and a few hundred long streams would drain the pool.
    """
    user = await request.auser()  # type: ignore[attr-defined]
    if settings.DATABASES["default"].get("OPTIONS", {}).get("pool"):
        await sync_to_async(close_old_connections)()
    return await forward(request, route, user_id=user.pk, body=body)


def proxy_views(app: str) -> dict[str, View]:
    """The views of the routes ``app`` serves, by URL name."""
    return {route.name: proxy_view(route) for route in routes_of(app)}


def urlpatterns(app: str, views: dict[str, View]) -> list[URLPattern]:
    """``app``'s URL patterns: each route's full path to its view in ``views``."""
    return [
        path(route.path.removeprefix("/"), views[route.name], name=route.name)
        for route in routes_of(app)
    ]
