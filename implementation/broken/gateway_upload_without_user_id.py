"""Broken on purpose: an upload reaches the service without X-User-Id (E2E-2).

The file chat's LLM request then names no user; the JSON routes keep theirs.
"""

from gateway.proxy import forward
from lamla.asgi import application

_upstream_request_headers = forward.upstream_request_headers


def _no_user_on_uploads(incoming, **kwargs):  # type: ignore[no-untyped-def]
    headers = _upstream_request_headers(incoming, **kwargs)
    if (kwargs.get("content_type") or "").startswith("multipart/"):
        headers = [(k, v) for k, v in headers if k != "x-user-id"]
    return headers


forward.upstream_request_headers = _no_user_on_uploads
__all__ = ["application"]
