"""WSGI entry point, for the old sync views (apps/chatbot/views.py) only.

The async endpoints need ASGI (lamla/asgi.py); under WSGI each request holds
a worker for its whole length. Kept as the "before" of the migration and as a
performance baseline.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lamla.settings")

application = get_wsgi_application()

from gateway.checks import raise_for_errors  # noqa: E402  (needs the app registry)

raise_for_errors()  # WSGI has no lifespan: refuse to start here instead
