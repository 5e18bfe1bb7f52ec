"""Broken on purpose: the service's headers named in its Connection header are relayed (GW-PROXY-5).

Only the fixed hop-by-hop names are dropped on the way back; the one filter is
rebound where each relay path imported it.
"""

from gateway.proxy import failures, forward, headers, relay
from lamla.asgi import application


def _ignoring_connection(upstream: headers.Headers) -> list[tuple[str, str]]:
    return [
        (name.lower(), value)
        for name, value in upstream
        if name.lower() in headers.DOWNSTREAM_ALLOWED and name.lower() not in headers.HOP_BY_HOP
    ]


for module in (forward, relay, failures):
    module.downstream_response_headers = _ignoring_connection  # type: ignore[attr-defined]
__all__ = ["application"]
