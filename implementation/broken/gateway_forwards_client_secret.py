"""Broken on purpose: the gateway forwards the client's own X-Internal-Secret (GW-PROXY-3)."""

from gateway.proxy import forward
from lamla.asgi import application

_upstream_request_headers = forward.upstream_request_headers


def _forwarding_client_secret(incoming, **kwargs):  # type: ignore[no-untyped-def]
    incoming = list(incoming)
    client_secret = [v for k, v in incoming if k.lower() == "x-internal-secret"]
    headers = _upstream_request_headers(incoming, **kwargs)
    if client_secret:
        headers = [(k, v) for k, v in headers if k != "x-internal-secret"]
        headers.append(("x-internal-secret", client_secret[0]))
    return headers


forward.upstream_request_headers = _forwarding_client_secret
__all__ = ["application"]
