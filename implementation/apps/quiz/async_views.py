"""The quiz routes' async proxy views (/api/quiz/*), one per route of gateway/routes.py."""

from __future__ import annotations

from apps.core.proxy_views import proxy_views

views = proxy_views("quiz")
