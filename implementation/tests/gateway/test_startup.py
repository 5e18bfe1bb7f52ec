"""Checks, lifespan and middleware wiring: the gateway refuses bad config, stays async."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.base import BaseHandler
from django.core.management import call_command
from django.test import override_settings

from gateway.asgi.lifespan import LifespanApp
from gateway.checks import check_client_settings, check_fastapi_secret, raise_for_errors
from gateway.upstream import client as async_client
from gateway.upstream.client import get_client

from .conftest import IMPLEMENTATION

PLACEHOLDER = "change-me-in-production-secret-key"


def test_placeholder_secret_is_refused_without_debug() -> None:
    with override_settings(SERVICE_SECRET=PLACEHOLDER, DEBUG=False):
        (error,) = check_fastapi_secret()
        assert error.id == "lamla.E002"
        with pytest.raises(ImproperlyConfigured, match="SERVICE_SECRET") as raised:
            raise_for_errors()
        assert "\n" not in str(raised.value)
    with override_settings(SERVICE_SECRET=PLACEHOLDER, DEBUG=True):
        assert check_fastapi_secret() == []
    with override_settings(SERVICE_SECRET=""):
        assert check_fastapi_secret()[0].id == "lamla.E001"


def test_keepalive_expiry_at_or_above_the_services_timeout_warns() -> None:
    assert check_client_settings() == []
    with override_settings(SERVICE_KEEPALIVE_EXPIRY=30.0):
        assert [m.id for m in check_client_settings()] == ["lamla.W001"]
    with override_settings(SERVICE_HTTP2=True):
        assert [m.id for m in check_client_settings()] == ["lamla.W002"]


class LifespanDriver:
    def __init__(self, *messages: str) -> None:
        self.incoming = [{"type": message} for message in messages]
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        return self.incoming.pop(0)

    async def send(self, message: dict) -> None:
        self.sent.append(message)


async def _startup() -> None:
    raise_for_errors()


@pytest.mark.asyncio
async def test_lifespan_shutdown_closes_the_pooled_client() -> None:
    app = LifespanApp(_not_http, on_startup=_startup, on_shutdown=async_client.aclose_clients)
    client = get_client()
    driver = LifespanDriver("lifespan.startup", "lifespan.shutdown")
    await app({"type": "lifespan"}, driver.receive, driver.send)
    assert [m["type"] for m in driver.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert client.is_closed


@pytest.mark.asyncio
async def test_lifespan_startup_fails_with_one_line_on_the_placeholder_secret() -> None:
    app = LifespanApp(_not_http, on_startup=_startup, on_shutdown=async_client.aclose_clients)
    driver = LifespanDriver("lifespan.startup")
    with override_settings(SERVICE_SECRET=PLACEHOLDER, DEBUG=False):
        await app({"type": "lifespan"}, driver.receive, driver.send)
    (failed,) = driver.sent
    assert failed["type"] == "lifespan.startup.failed"
    assert "SERVICE_SECRET" in failed["message"]
    assert "\n" not in failed["message"]


@pytest.mark.asyncio
async def test_lifespan_passes_http_to_django() -> None:
    seen = []

    async def inner(scope, receive, send) -> None:
        seen.append(scope["type"])

    app = LifespanApp(inner, on_startup=_startup, on_shutdown=async_client.aclose_clients)
    await app({"type": "http"}, LifespanDriver().receive, LifespanDriver().send)
    assert seen == ["http"]


async def _not_http(scope, receive, send) -> None:
    raise AssertionError("lifespan reached Django")


def test_the_asgi_application_is_the_lifespan_wrapper() -> None:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from gateway.asgi.body_limit import BodyLimit
    from gateway.asgi.edge import EdgeHeaders
    from gateway.asgi.fastpath import FastPath
    from gateway.lifecycle.probes import Probes
    from gateway.observability.observe import Observe
    from lamla.asgi import application, django_application

    assert isinstance(application, LifespanApp)
    # Outside in: proxy rewrite, edge headers, probes, request log, body guard, fast path, Django.
    proxy_headers = application.app
    assert isinstance(proxy_headers, ProxyHeadersMiddleware)
    assert proxy_headers.trusted_hosts.always_trust is False  # nobody by default (SEC-4)
    edge_headers = proxy_headers.app
    assert isinstance(edge_headers, EdgeHeaders)
    probes = edge_headers.app
    assert isinstance(probes, Probes)
    observe = probes.app
    assert isinstance(observe, Observe)
    guard = observe.app
    assert isinstance(guard, BodyLimit)
    fast = guard.app
    assert isinstance(fast, FastPath)  # GATEWAY_FAST_PATH is on by default
    assert fast.app is django_application
    assert fast.plan is not None, "the configured middleware turned the fast path off"
    driver = LifespanDriver("lifespan.startup", "lifespan.shutdown")
    asyncio.run(application({"type": "lifespan"}, driver.receive, driver.send))
    assert [m["type"] for m in driver.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


def test_no_middleware_is_adapted_to_sync_under_asgi(caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        BaseHandler().load_middleware(is_async=True)
    adapted = [r.getMessage() for r in caplog.records if "adapted" in r.getMessage()]
    assert adapted == []


def test_ensure_user_creates_then_updates(database) -> None:
    out = io.StringIO()
    call_command("ensure_user", "bob", "--password", "pw-1", stdout=out)
    call_command("ensure_user", "bob", "--password", "pw-2", stdout=out)
    assert out.getvalue().splitlines() == ["created user bob", "updated user bob"]
    assert "pw-" not in out.getvalue()
    bob = get_user_model().objects.get(username="bob")
    assert bob.check_password("pw-2")


def test_gc_tuning_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    from gateway.asgi.gc_tuning import YOUNG_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _settings_read_under(env: dict[str, str]) -> dict[str, object]:
    """lamla.settings as a fresh process reads it with ``env`` (settings load once per process)."""
    code = (
        "import json, lamla.settings as s; "
        "print(json.dumps({'url': s.SERVICE_BASE_URL, 'secret': s.SERVICE_SECRET, "
        "'pool': s.SERVICE_MAX_CONNECTIONS}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICE_", "FASTAPI_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_DEBUG": "1", **env},
        cwd=IMPLEMENTATION,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_seeds_fastapi_names_are_read_and_service_names_win() -> None:
    seed = {
        "FASTAPI_BASE_URL": "http://seed:1",
        "FASTAPI_SECRET": "seed-s",
        "FASTAPI_MAX_CONNECTIONS": "7",
    }
    assert _settings_read_under(seed) == {"url": "http://seed:1", "secret": "seed-s", "pool": 7}
    both = {**seed, "SERVICE_BASE_URL": "http://new:2", "SERVICE_SECRET": "new-s"}
    assert _settings_read_under(both) == {"url": "http://new:2", "secret": "new-s", "pool": 7}
