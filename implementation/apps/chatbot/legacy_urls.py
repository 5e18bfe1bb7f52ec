"""Routes to the seed's old sync views (apps/chatbot/views.py), when GATEWAY_LEGACY_VIEWS is on."""

from __future__ import annotations

from apps.chatbot import views
from apps.core.proxy_views import urlpatterns as route_patterns

app_name = "legacy"

urlpatterns = route_patterns(app_name, views.views)
