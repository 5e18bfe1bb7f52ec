"""One pooled httpx.AsyncClient per worker process and event loop.

Django has no ASGI lifespan of its own and a client is bound to the loop that
first used it (a module-level client reused on a second loop fails with
"Event loop is closed"), so clients are created lazily, keyed by the running
loop, and closed by the lifespan wrapper (gateway/asgi/lifespan.py) through
``aclose_clients()``. A client whose loop has closed is dropped, never reused.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx
from django.conf import settings

from gateway.upstream.signing import SigningAuth
from gateway.upstream.transport import AiohttpTransport, PoolStats

__all__ = [
    "NoCookieJar",
    "aclose_clients",
    "build_client",
    "client_options",
    "get_client",
    "pool_stats",
    "service_url",
]


class NoCookieJar(CookieJar):
    """A jar that never stores anything (GW-PROXY-4).

    The service's Set-Cookie must not ride along on the next user's request,
    and the shared client is used for every user.
    """

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: object, request: object) -> None:  # type: ignore[override]
        return None


def client_options() -> dict[str, Any]:
    """What every client of the service is built with, from settings.

    No environment proxies, no redirects, no cookies kept (GW-PROXY-4);
    SERVICE_AUTH_MODE "hmac" installs ``SigningAuth`` (SEC-7), and in "secret"
    mode there is no auth object at all, so the hot path pays nothing for it.
    """
    return {
        "base_url": settings.SERVICE_BASE_URL,
        "timeout": httpx.Timeout(
            connect=settings.SERVICE_CONNECT_TIMEOUT,
            read=settings.SERVICE_READ_TIMEOUT,
            write=settings.SERVICE_WRITE_TIMEOUT,
            pool=settings.SERVICE_POOL_TIMEOUT,
        ),
        "limits": httpx.Limits(
            max_connections=settings.SERVICE_MAX_CONNECTIONS,
            max_keepalive_connections=settings.SERVICE_MAX_KEEPALIVE,
            keepalive_expiry=settings.SERVICE_KEEPALIVE_EXPIRY,
        ),
        "trust_env": False,
        "follow_redirects": False,
        "cookies": NoCookieJar(),
        "auth": SigningAuth(settings.SERVICE_SECRET)
        if settings.SERVICE_AUTH_MODE == "hmac"
        else None,
    }


def build_client() -> httpx.AsyncClient:
    """The async client of ``client_options()``, over the transport SERVICE_TRANSPORT picks.

    "aiohttp" (the default, gateway/upstream/transport.py: its cost does not
    grow with the pool) or "httpcore" (httpx's own); HTTP/2 needs httpcore.
    """
    options = client_options()
    transport = None
    if settings.SERVICE_TRANSPORT == "aiohttp" and not settings.SERVICE_HTTP2:
        transport = AiohttpTransport(limits=options["limits"])
    return httpx.AsyncClient(**options, http2=settings.SERVICE_HTTP2, transport=transport)


_lock = threading.Lock()
_pid = os.getpid()
_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def get_client() -> httpx.AsyncClient:
    """The running loop's client, created on first use."""
    global _pid
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is not None and not client.is_closed:
        return client
    with _lock:
        if _pid != os.getpid():  # forked after first use: the parent's sockets are not ours
            _clients.clear()
            _pid = os.getpid()
        for stale in [other for other in _clients if other.is_closed()]:
            del _clients[stale]
        client = _clients.get(loop)
        if client is None or client.is_closed:
            client = _clients[loop] = build_client()
        return client


def pool_stats() -> PoolStats | None:
    """The running loop's pool, if its client exists and its transport counts (aiohttp).

    Reads ``AsyncClient._transport``: httpx has no public way to the transport it was
    given, and the metrics must not create a client to read one.
    """
    client = _clients.get(asyncio.get_running_loop())
    if client is None or client.is_closed:
        return None
    transport = getattr(client, "_transport", None)
    return transport.stats() if isinstance(transport, AiohttpTransport) else None


async def aclose_clients() -> None:
    """Close the running loop's client and forget clients of closed loops."""
    loop = asyncio.get_running_loop()
    with _lock:
        client = _clients.pop(loop, None)
        for stale in [other for other in _clients if other.is_closed()]:
            del _clients[stale]
    if client is not None:
        await client.aclose()


def service_url(path: str) -> httpx.URL:
    """The absolute URL of ``path`` at the service.

    Passing it to ``build_request`` spares httpx from merging the client's
    base URL on every request (a third of ``build_request``'s cost).
    """
    return _join(settings.SERVICE_BASE_URL, path)


@functools.lru_cache(maxsize=64)  # keys are the few service paths in the code
def _join(base_url: str, path: str) -> httpx.URL:
    return httpx.URL(base_url.rstrip("/") + "/").join(path.lstrip("/"))
