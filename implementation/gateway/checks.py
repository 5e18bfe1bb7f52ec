"""System checks for the proxy settings, also run when the ASGI app starts.

``manage.py`` commands run them as usual; uvicorn does not, so the lifespan
wrapper (and wsgi.py) call ``raise_for_errors()`` to refuse to start.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from gateway.limits import parse_rate
from gateway.routes import rate_buckets, rate_setting
from gateway.upstream import aiohttp_compat

TAG = "lamla"


def check_fastapi_secret(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    secret = settings.SERVICE_SECRET
    if not secret:
        return [
            checks.Error(
                "SERVICE_SECRET (or FASTAPI_SECRET) is empty: set it to the service's secret",
                id="lamla.E001",
            )
        ]
    if secret == settings.SERVICE_SECRET_PLACEHOLDER and not settings.DEBUG:
        return [
            checks.Error(
                "SERVICE_SECRET is the placeholder 'change-me-in-production-secret-key': "
                "set SERVICE_SECRET (or FASTAPI_SECRET) to the service's secret "
                "(or turn DJANGO_DEBUG on)",
                id="lamla.E002",
            )
        ]
    return []


def check_client_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    if settings.SERVICE_KEEPALIVE_EXPIRY >= settings.SERVICE_KEEPALIVE_TIMEOUT:
        messages.append(
            checks.Warning(
                f"SERVICE_KEEPALIVE_EXPIRY={settings.SERVICE_KEEPALIVE_EXPIRY:g} is not below the "
                f"service's keep-alive timeout (SERVICE_KEEPALIVE_TIMEOUT="
                f"{settings.SERVICE_KEEPALIVE_TIMEOUT:g}): idle connections may be reused as "
                "the service closes them",
                id="lamla.W001",
            )
        )
    if settings.SERVICE_HTTP2 and settings.SERVICE_BASE_URL.startswith("http://"):
        messages.append(
            checks.Warning(
                "SERVICE_HTTP2 is on for an http:// URL: httpx then still speaks HTTP/1.1",
                id="lamla.W002",
            )
        )
    return messages


def check_rate_limits(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The rate of every bucket the route table names must be set and parse, or no start."""
    messages: list[checks.CheckMessage] = []
    for setting in map(rate_setting, rate_buckets()):
        if not hasattr(settings, setting):
            messages.append(
                checks.Error(
                    f"{setting} is not set: a route of gateway/routes.py counts in its bucket "
                    "(declare it in lamla/settings.py)",
                    id="lamla.E003",
                )
            )
            continue
        try:
            parse_rate(getattr(settings, setting))
        except (TypeError, ValueError) as exc:
            messages.append(checks.Error(f"{setting}: {exc}", id="lamla.E003"))
    return messages


def check_aiohttp_internals(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The aiohttp transport needs the internals aiohttp_compat.py uses, as it expects them."""
    if settings.SERVICE_TRANSPORT != "aiohttp" or settings.SERVICE_HTTP2:
        return []  # httpcore carries the bytes: aiohttp is not used
    try:
        aiohttp_compat.verify()
    except aiohttp_compat.IncompatibleAiohttp as exc:
        return [
            checks.Error(
                f"{exc}; set SERVICE_TRANSPORT=httpcore to run on httpx's own transport",
                id="lamla.E004",
            )
        ]
    return []


def register() -> None:
    checks.register(check_fastapi_secret, TAG)
    checks.register(check_client_settings, TAG)
    checks.register(check_rate_limits, TAG)
    checks.register(check_aiohttp_internals, TAG)


def raise_for_errors() -> None:
    """Raise ImproperlyConfigured with the first serious message, one line."""
    for message in checks.run_checks(tags=[TAG]):
        if message.is_serious():
            raise ImproperlyConfigured(f"{message.msg} ({message.id})")
