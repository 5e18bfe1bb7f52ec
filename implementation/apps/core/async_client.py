"""One pooled httpx.AsyncClient per worker process and event loop.

Django has no ASGI lifespan of its own and a client is bound to the loop that
first used it (a module-level client reused on a second loop fails with
"Event loop is closed"), so clients are created lazily, keyed by the running
loop, and closed by the lifespan wrapper (apps/core/lifespan.py) through
``aclose_clients()``. A client whose loop has closed is dropped, never reused.
"""

from __future__ import annotations

import asyncio
import os
import threading
from http.cookiejar import Cookie, CookieJar

import httpx
from django.conf import settings

__all__ = ["NoCookieJar", "aclose_clients", "build_client", "get_client"]


class NoCookieJar(CookieJar):
    """A jar that never stores anything (GW-PROXY-4).

    The service's Set-Cookie must not ride along on the next user's request,
    and the shared client is used for every user.
    """

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: object, request: object) -> None:  # type: ignore[override]
        return None


def build_client() -> httpx.AsyncClient:
    """A client configured from settings (no env proxies, no redirects, no cookies)."""
    return httpx.AsyncClient(
        base_url=settings.FASTAPI_BASE_URL,
        timeout=httpx.Timeout(
            connect=settings.FASTAPI_CONNECT_TIMEOUT,
            read=settings.FASTAPI_READ_TIMEOUT,
            write=settings.FASTAPI_WRITE_TIMEOUT,
            pool=settings.FASTAPI_POOL_TIMEOUT,
        ),
        limits=httpx.Limits(
            max_connections=settings.FASTAPI_MAX_CONNECTIONS,
            max_keepalive_connections=settings.FASTAPI_MAX_KEEPALIVE,
            keepalive_expiry=settings.FASTAPI_KEEPALIVE_EXPIRY,
        ),
        http2=settings.FASTAPI_HTTP2,
        trust_env=False,
        follow_redirects=False,
        cookies=NoCookieJar(),
    )


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


async def aclose_clients() -> None:
    """Close the running loop's client and forget clients of closed loops."""
    loop = asyncio.get_running_loop()
    with _lock:
        client = _clients.pop(loop, None)
        for stale in [other for other in _clients if other.is_closed()]:
            del _clients[stale]
    if client is not None:
        await client.aclose()
