"""URLs: everything lives under /api/; unknown /api/ paths are 404 problems.

The proxied routes' paths are in gateway/routes.py; each app's URLconf takes
its own from there, so they are included here without a prefix.
"""

from __future__ import annotations

from django.conf import settings
from django.urls import include, path, re_path

from apps.core import views as core_views

urlpatterns = [
    path("api/health/", core_views.health, name="health"),
    path("api/auth/", include("apps.accounts.urls")),
    path("", include("apps.chatbot.urls")),
    path("", include("apps.quiz.urls")),
    *([path("", include("apps.chatbot.legacy_urls"))] if settings.GATEWAY_LEGACY_VIEWS else []),
    re_path(r"^api/(?P<path>.*)$", core_views.api_not_found),
]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
