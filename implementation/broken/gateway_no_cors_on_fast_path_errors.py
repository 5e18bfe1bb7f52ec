"""Broken on purpose: the fast path's error answers (429, 502, ...) get no CORS headers (GW-SESS-6).

Its response half of the middleware skips CorsMiddleware for a status >= 400;
its successes, and everything Django answers itself (401, 403), keep them.
"""

from lamla.asgi import application  # first: it sets Django up, which corsheaders needs

from corsheaders.middleware import CorsMiddleware  # isort: skip
from gateway.asgi.middleware_plan import MiddlewarePlan  # isort: skip


def _cors_on_success_only(self, request, response):  # type: ignore[no-untyped-def]
    for step in self.response_steps:
        cors = isinstance(getattr(step, "__self__", None), CorsMiddleware)
        if cors and response.status_code >= 400:
            continue
        step(request, response)
    return response


MiddlewarePlan.finish = _cors_on_success_only  # type: ignore[method-assign]
__all__ = ["application"]
