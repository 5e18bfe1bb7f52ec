"""The seed's persistent async HTTP client: one pooled httpx.AsyncClient per worker and loop.

It lives with the rest of the upstream layer in gateway/upstream/client.py;
this module keeps the seed's name for it.
"""

from __future__ import annotations

from gateway.upstream.client import aclose_clients, build_client, get_client, service_url

__all__ = ["aclose_clients", "build_client", "get_client", "service_url"]
