"""What the gateway's edge does to every HTTP exchange (SEC-1, SEC-3, SEC-4).

``X-Forwarded-For``/``-Proto`` are believed only from GATEWAY_TRUSTED_PROXIES
(uvicorn's own ProxyHeadersMiddleware; the server runs with
``--no-proxy-headers``, since uvicorn trusts 127.0.0.1 by default); cookies set
over HTTPS get ``Secure``; ``nosniff`` and ``X-Frame-Options: DENY`` go on
every response, also on Django's early refusals that skip its middleware.
"""

from __future__ import annotations

from collections.abc import Sequence

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.asgi.types import ASGIApp, Message, Receive, Scope, Send

RawHeaders = Sequence[tuple[bytes, bytes]]

SET_COOKIE = b"set-cookie"
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))


def edge(app: ASGIApp, trusted_proxies: Sequence[str]) -> ASGIApp:
    """``app`` behind the trusted-proxy rewrite of the scope and the response header rules."""
    return ProxyHeadersMiddleware(  # type: ignore[return-value]
        EdgeHeaders(app),  # type: ignore[arg-type]
        trusted_hosts=list(trusted_proxies),
    )


class EdgeHeaders:
    """ASGI middleware: security headers on every response, Secure cookies over HTTPS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = with_security_headers(message.get("headers", []))
                if https:
                    headers = secure_cookie_headers(headers)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_security_headers(headers: RawHeaders) -> list[tuple[bytes, bytes]]:
    """``headers`` plus each of SECURITY_HEADERS they do not set already."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *((name, value) for name, value in SECURITY_HEADERS if name not in present)]


def secure_cookie_headers(headers: RawHeaders) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``; Secure`` added to each Set-Cookie that lacks it."""
    return [
        (name, value + b"; Secure")
        if name.lower() == SET_COOKIE and not has_secure(value)
        else (name, value)
        for name, value in headers
    ]


def has_secure(cookie: bytes) -> bool:
    """True when a Set-Cookie value already has the Secure attribute."""
    _, *attributes = cookie.split(b";")
    return any(attribute.strip().lower() == b"secure" for attribute in attributes)
