"""Broken on purpose: the shared client keeps the cookies the service sets (GW-PROXY-4)."""

from http.cookiejar import CookieJar

from apps.core import async_client
from lamla.asgi import application

async_client.NoCookieJar = CookieJar  # type: ignore[misc]
__all__ = ["application"]
