"""ASGI entry point: ``uvicorn lamla.asgi:application --lifespan on``.

Django behind the fast path (apps/core/fastpath.py: the happy path of the
JSON proxy routes without Django's per-request thread hops; GATEWAY_FAST_PATH
turns it off), wrapped in a lifespan: startup refuses a misconfigured gateway
(e.g. the placeholder FASTAPI_SECRET outside debug) with one log line,
shutdown closes the pooled httpx client.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lamla.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402

from apps.core.async_client import aclose_clients  # noqa: E402  (needs the app registry)
from apps.core.checks import raise_for_errors  # noqa: E402
from apps.core.fastpath import FastPath  # noqa: E402
from apps.core.gc_tuning import tune_gc  # noqa: E402
from apps.core.lifespan import LifespanApp  # noqa: E402


async def _startup() -> None:
    raise_for_errors()
    if settings.GATEWAY_GC_TUNING:
        tune_gc()


application = LifespanApp(
    FastPath(django_application) if settings.GATEWAY_FAST_PATH else django_application,
    on_startup=_startup,
    on_shutdown=aclose_clients,
)
