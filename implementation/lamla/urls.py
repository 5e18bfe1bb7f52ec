"""URLs: everything lives under /api/; unknown /api/ paths are 404 problems.

The proxied routes' paths are in gateway/routes.py; each app's URLconf takes
its own from there, so they are included here without a prefix. With
GATEWAY_SYNC_VIEWS on, the same routes are served by the seed's sync views
instead (``proxied()``).
"""

from __future__ import annotations

from django.conf import settings
from django.urls import URLResolver, include, path, re_path

from apps.chatbot.views import legacy_view
from apps.core import views as core_views
from apps.core.proxy_views import proxy_views
from apps.core.proxy_views import urlpatterns as route_patterns
from gateway.routes import Kind, routes_of


def proxied(app: str) -> URLResolver:
    """``app``'s proxied routes: its own URLconf (async views), or the sync views.

    With GATEWAY_SYNC_VIEWS, every JSON and stream route of ``app`` in
    gateway/routes.py is served by the seed's sync view (apps/chatbot/views.py);
    an upload route keeps its async view, since the sync views read JSON bodies
    only. A sync view has no ``proxy_route``, so the ASGI fast path leaves its
    route to Django (gateway/asgi/fastpath.py).
    """
    if not settings.GATEWAY_SYNC_VIEWS:
        return path("", include(f"apps.{app}.urls"))
    views = proxy_views(app)
    for route in routes_of(app):
        if route.kind is not Kind.UPLOAD:
            views[route.name] = legacy_view(route)
    return path("", include((route_patterns(app, views), app)))


urlpatterns = [
    path("api/health/", core_views.health, name="health"),
    path("api/auth/", include("apps.accounts.urls")),
    proxied("chatbot"),
    proxied("quiz"),
    *([path("", include("apps.chatbot.legacy_urls"))] if settings.GATEWAY_LEGACY_VIEWS else []),
    re_path(r"^api/(?P<path>.*)$", core_views.api_not_found),
]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
