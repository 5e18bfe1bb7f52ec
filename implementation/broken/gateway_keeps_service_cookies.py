"""Broken on purpose: the shared client keeps the cookies the service sets (GW-PROXY-4)."""

from http.cookiejar import CookieJar

from gateway.upstream import client
from lamla.asgi import application

client.NoCookieJar = CookieJar  # type: ignore[misc]
__all__ = ["application"]
