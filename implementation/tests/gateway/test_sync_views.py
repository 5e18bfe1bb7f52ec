"""GATEWAY_SYNC_VIEWS: the seed's sync view on every proxied JSON and stream route.

lamla/urls.py then routes each such route of gateway/routes.py to
``legacy_view(route)`` (apps/chatbot/views.py) instead of its async view; an
upload keeps its async view. The ASGI fast path serves a path only when Django
resolves it to that route's own async proxy view, so it serves none of them.
The sync views answer as the async ones do, also to a service header longer than
the async views' transport takes (FAULT-4; httpcore alone would relay it).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Iterator

import httpx
import pytest
import respx
from django.conf import settings
from django.test import Client, override_settings
from django.urls import resolve, reverse

from gateway.asgi.fastpath import FastPath
from gateway.auth.session_users import SessionUsers
from gateway.routes import Kind, ProxyRoute, served
from lamla.asgi import django_application

from .asgi_driver import Browser, Recorder, call
from .conftest import SERVICE_URL

pytestmark = pytest.mark.usefixtures("fresh_limits")

#: The standard proxied routes (not the optional /api/legacy/ ones).
ROUTES = [route for route in served() if not route.legacy]
SYNC = [route for route in ROUTES if route.kind is not Kind.UPLOAD]
UPLOADS = [route for route in ROUTES if route.kind is Kind.UPLOAD]
REPLY = {"reply": "r", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
EVENTS = b'event: token\ndata: {"text":"a"}\n\nevent: done\ndata: {"usage":{}}\n\n'


@pytest.fixture
def browser(alice) -> Browser:
    client = Client()
    client.force_login(alice)
    return Browser(client.cookies[settings.SESSION_COOKIE_NAME].value)


@pytest.fixture
def sync_urlconf() -> Iterator[str]:
    """lamla/urls.py as a gateway started with GATEWAY_SYNC_VIEWS=1 reads it, as ROOT_URLCONF."""
    import lamla.urls

    name = "sync_views_urls"
    spec = importlib.util.spec_from_file_location(name, lamla.urls.__file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with override_settings(GATEWAY_SYNC_VIEWS=True):
        spec.loader.exec_module(module)
    sys.modules[name] = module
    try:
        with override_settings(ROOT_URLCONF=name):
            yield name
    finally:
        del sys.modules[name]


def test_the_setting_is_off_by_default() -> None:
    assert settings.GATEWAY_SYNC_VIEWS is False
    for route in ROUTES:
        assert getattr(resolve(route.path).func, "proxy_route", None) == route, route.path


def test_json_and_stream_routes_resolve_to_sync_views_and_uploads_keep_theirs(
    sync_urlconf: str,
) -> None:
    assert SYNC
    assert UPLOADS
    for route in SYNC:
        match = resolve(route.path)
        assert not asyncio.iscoroutinefunction(match.func), f"{route.path}: an async view"
        assert not hasattr(match.func, "proxy_route"), f"{route.path}: still its async view"
        assert reverse(f"{route.app}:{route.name}") == route.path  # same names, same paths
    for route in UPLOADS:
        match = resolve(route.path)
        assert asyncio.iscoroutinefunction(match.func), f"{route.path}: not its async view"
        assert match.func.proxy_route == route


def test_the_fast_path_serves_none_of_the_sync_views_routes(sync_urlconf: str) -> None:
    fast = FastPath(Recorder(django_application), sessions=SessionUsers(ttl=5.0, max_size=10))
    assert {route.path for route in SYNC if fast._target(route.path)} == set()
    assert {route.path for route in UPLOADS if fast._target(route.path)} == {
        route.path for route in UPLOADS
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("route", SYNC, ids=[route.path for route in SYNC])
async def test_each_sync_route_is_answered_by_django_through_the_fast_path(
    sync_urlconf: str, service, browser: Browser, alice, route: ProxyRoute
) -> None:
    if route.stream:
        answer = httpx.Response(200, content=EVENTS, headers={"content-type": "text/event-stream"})
    else:
        answer = httpx.Response(200, json=REPLY)
    upstream = service.post(route.upstream).mock(return_value=answer)
    django_app = Recorder(django_application)
    fast = FastPath(django_app, sessions=SessionUsers(ttl=5.0, max_size=10))

    result = await call(fast, "POST", route.path, browser.headers(), b'{"message": "m"}')

    assert result.status == 200, result.body
    assert django_app.calls == 1, "the fast path served a route routed to a sync view"
    assert upstream.calls.last.request.headers["x-user-id"] == str(alice.pk)
    if route.stream:
        assert result.body == EVENTS
    else:
        assert json.loads(result.body) == REPLY


@pytest.mark.parametrize(("size", "status"), [(8190, 200), (8 * 1024 + 1, 502)])
@pytest.mark.parametrize("path", ["/api/chat/", "/api/chat/stream/", "/api/legacy/chat/"])
def test_a_service_header_longer_than_the_async_views_take_is_a_502(
    sync_urlconf: str, browser: Browser, path: str, size: int, status: int
) -> None:
    route = next(route for route in served() if route.path == path)
    stream = {"content-type": "text/event-stream"} if route.stream else {}
    answer = httpx.Response(
        200,
        content=EVENTS if route.stream else json.dumps(REPLY).encode(),
        headers={"content-type": "application/json", **stream, "x-big": "a" * size},
    )
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = browser.session_key
    with respx.mock(base_url=SERVICE_URL, using="httpx") as service:
        service.post(route.upstream).mock(return_value=answer)
        response = client.post(path, b'{"message": "m"}', content_type="application/json")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert response.status_code == status, body
    if status == 502:
        assert response["Content-Type"] == "application/problem+json"
        assert "x-big" not in response
        assert b"aaaa" not in body
