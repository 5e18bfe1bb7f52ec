"""ASGI entry point: ``uvicorn lamla.asgi:application --lifespan on``.

Django behind the fast path (apps/core/fastpath.py: the happy path of the
JSON proxy routes without Django's per-request thread hops; GATEWAY_FAST_PATH
turns it off), wrapped in a lifespan: startup refuses a misconfigured gateway
(e.g. the placeholder FASTAPI_SECRET outside debug) with one log line,
shutdown closes the pooled httpx client. Outside both paths, a body guard
(apps/core/body_limits.py) stops reading a request body near its limit,
since Django's handler would otherwise read all of it before any view runs.
Outermost, the edge (apps/core/edge.py): X-Forwarded-* believed only from
GATEWAY_TRUSTED_PROXIES (uvicorn's own ProxyHeadersMiddleware; the server runs
with --no-proxy-headers), security headers on every response, Secure cookies
over HTTPS.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lamla.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.urls import reverse  # noqa: E402

from apps.core.async_client import aclose_clients  # noqa: E402  (needs the app registry)
from apps.core.body_limits import ASGIApp, BodyLimit  # noqa: E402
from apps.core.checks import raise_for_errors  # noqa: E402
from apps.core.edge import edge  # noqa: E402
from apps.core.fastpath import FastPath  # noqa: E402
from apps.core.gc_tuning import tune_gc  # noqa: E402
from apps.core.lifespan import LifespanApp  # noqa: E402


async def _startup() -> None:
    raise_for_errors()
    if settings.GATEWAY_GC_TUNING:
        tune_gc()


def _body_limits(app: ASGIApp) -> BodyLimit:
    """JSON bodies up to MAX_JSON_BODY everywhere; the upload route takes a file plus framing."""
    upload = settings.MAX_UPLOAD_SIZE + settings.MULTIPART_OVERHEAD
    return BodyLimit(
        app, default=settings.MAX_JSON_BODY, limits={reverse("chatbot:chat-file"): upload}
    )


application = LifespanApp(
    edge(
        _body_limits(
            FastPath(django_application) if settings.GATEWAY_FAST_PATH else django_application
        ),
        settings.GATEWAY_TRUSTED_PROXIES,
    ),
    on_startup=_startup,
    on_shutdown=aclose_clients,
)
