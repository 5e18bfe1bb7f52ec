"""Every browser route the gateway proxies to the service, declared once.

The URLconf (apps/*/urls.py), the fast path's targets (gateway/asgi/fastpath.py),
the rate buckets and their settings (gateway/limits.py, gateway/checks.py) and
the body limits (gateway/asgi/body_limit.py) are all derived from ``ROUTES``:
adding a proxied endpoint is one line here (plus the spec and the service).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.conf import settings


class Kind(enum.Enum):
    """What a route takes from the browser and gives back."""

    JSON = "json"  # a JSON object in, the service's JSON answer out
    STREAM = "stream"  # a JSON object in, the service's event stream relayed out
    UPLOAD = "upload"  # a multipart upload in (checked and rebuilt), a JSON answer out


@dataclass(frozen=True)
class ProxyRoute:
    """``POST path`` at the gateway is ``POST upstream`` at the service, for the session user."""

    app: str  # the Django app (and URL namespace) serving it
    name: str  # its URL name in that namespace
    path: str  # the browser's path
    upstream: str  # the service's path
    kind: Kind
    bucket: str  # the rate-limit bucket; GATEWAY_RATE_LIMIT_<BUCKET> holds its rate
    legacy: bool = False  # one of the seed's old sync views (GATEWAY_LEGACY_VIEWS)

    @property
    def fast_path(self) -> bool:
        """The ASGI fast path may serve it (GATEWAY_FAST_PATH): every async route."""
        return not self.legacy

    @property
    def stream(self) -> bool:
        return self.kind is Kind.STREAM

    @property
    def rate_setting(self) -> str:
        return rate_setting(self.bucket)

    def body_limit(self) -> int:
        """The most request-body bytes the gateway reads for this route."""
        if self.kind is Kind.UPLOAD:
            return settings.MAX_UPLOAD_SIZE + settings.MULTIPART_OVERHEAD
        return settings.MAX_JSON_BODY


ROUTES: tuple[ProxyRoute, ...] = (
    ProxyRoute("chatbot", "chat", "/api/chat/", "/chatbot/", Kind.JSON, "chat"),
    ProxyRoute(
        "chatbot", "chat-stream", "/api/chat/stream/", "/chatbot/stream/", Kind.STREAM, "chat"
    ),
    ProxyRoute("chatbot", "chat-file", "/api/chat/file/", "/chatbot/file/", Kind.UPLOAD, "chat"),
    ProxyRoute("quiz", "generate", "/api/quiz/generate/", "/quiz/", Kind.JSON, "quiz"),
    # The seed's sync views, kept for backward compatibility (off unless GATEWAY_LEGACY_VIEWS).
    ProxyRoute("legacy", "chat", "/api/legacy/chat/", "/chatbot/", Kind.JSON, "chat", legacy=True),
    ProxyRoute(
        "legacy",
        "chat-stream",
        "/api/legacy/chat/stream/",
        "/chatbot/stream/",
        Kind.STREAM,
        "chat",
        legacy=True,
    ),
)


def rate_setting(bucket: str) -> str:
    return f"GATEWAY_RATE_LIMIT_{bucket.upper()}"


def routes_of(app: str) -> tuple[ProxyRoute, ...]:
    """The routes one Django app serves, in table order."""
    return tuple(route for route in ROUTES if route.app == app)


def served() -> tuple[ProxyRoute, ...]:
    """The routes this gateway serves with its settings (the legacy ones are opt-in)."""
    return tuple(route for route in ROUTES if settings.GATEWAY_LEGACY_VIEWS or not route.legacy)


def rate_buckets() -> tuple[str, ...]:
    """Every bucket a route names, once, in table order."""
    return tuple(dict.fromkeys(route.bucket for route in ROUTES))
