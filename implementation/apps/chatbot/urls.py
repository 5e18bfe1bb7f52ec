"""Routes to the chat app's async views; the paths come from gateway/routes.py."""

from __future__ import annotations

from apps.chatbot import async_views
from apps.core.proxy_views import urlpatterns as route_patterns

app_name = "chatbot"

urlpatterns = route_patterns(app_name, async_views.views)
