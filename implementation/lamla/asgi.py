"""ASGI entry point: ``uvicorn lamla.asgi:application --lifespan on``.

Django wrapped in a lifespan: startup refuses a misconfigured gateway (e.g.
the placeholder FASTAPI_SECRET outside debug) with one log line, shutdown
closes the pooled httpx client.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lamla.settings")

django_application = get_asgi_application()

from apps.core.async_client import aclose_clients  # noqa: E402  (needs the app registry)
from apps.core.checks import raise_for_errors  # noqa: E402
from apps.core.lifespan import LifespanApp  # noqa: E402


async def _startup() -> None:
    raise_for_errors()


application = LifespanApp(django_application, on_startup=_startup, on_shutdown=aclose_clients)
