"""What the gateway's edge does to every HTTP exchange (SEC-1, SEC-3, SEC-4).

Who the client is: uvicorn's own ``ProxyHeadersMiddleware`` believes
``X-Forwarded-For`` and ``X-Forwarded-Proto`` from 127.0.0.1 by default, so on
loopback any client could claim any address or HTTPS. The gateway therefore
runs uvicorn with ``--no-proxy-headers`` and wraps itself in the same
(well-kept) middleware with ``GATEWAY_TRUSTED_PROXIES`` as the only trusted
peers: an empty list trusts no one, and behind trusted proxies the client is
the right-most untrusted address of the chain. ``scope["client"]`` and
``scope["scheme"]`` then say what Django (``REMOTE_ADDR``, ``is_secure()``)
and the fast path see.

What every response carries: Django's ``SESSION_COOKIE_SECURE`` and
``CSRF_COOKIE_SECURE`` are fixed at start, but one gateway may be reached over
HTTP and HTTPS, so every cookie set on an HTTPS request is marked ``Secure``
here. ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options: DENY`` are
added to any response that lacks them: Django's middleware sets them, but not
on answers given before it runs to the end (a disallowed Host is refused
inside CommonMiddleware, before XFrameOptionsMiddleware sees the response).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
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
