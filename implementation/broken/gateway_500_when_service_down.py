"""Broken on purpose: a transport failure escapes as a 500 instead of 502/504 (GW-PROXY-7)."""

import httpx

from gateway.proxy import forward
from lamla.asgi import application


def _reraise(exc: httpx.HTTPError, **kwargs: str) -> None:
    raise exc


forward.transport_failure = _reraise
__all__ = ["application"]
