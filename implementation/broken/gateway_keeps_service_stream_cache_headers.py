"""Broken on purpose: the relayed stream keeps the service's own caching headers (GW-STREAM-2).

``no-cache`` and ``X-Accel-Buffering: no`` are only defaults, used when the
service sent neither.
"""

from gateway.proxy import forward, relay
from lamla.asgi import application


def _defaults_only(upstream, stream):  # type: ignore[no-untyped-def]
    response = relay.EventStreamResponse(stream, status=upstream.status_code)
    for name, value in relay.downstream_response_headers(upstream.headers.multi_items()):
        response[name] = value
    response.setdefault("Cache-Control", "no-cache")
    response.setdefault("X-Accel-Buffering", "no")
    return response


forward.event_stream_response = _defaults_only
__all__ = ["application"]
