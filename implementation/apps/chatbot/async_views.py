"""The chat routes' async proxy views (/api/chat/*), one per route of gateway/routes.py.

Each is the generic proxy view (apps/core/proxy_views.py); the ASGI fast path
serves the same routes' happy path without Django's thread hops.
"""

from __future__ import annotations

from apps.core.proxy_views import proxy_views

views = proxy_views("chatbot")
