"""Routes to the quiz app's async views; the paths come from gateway/routes.py."""

from __future__ import annotations

from apps.core.proxy_views import urlpatterns as route_patterns
from apps.quiz import async_views

app_name = "quiz"

urlpatterns = route_patterns(app_name, async_views.views)
