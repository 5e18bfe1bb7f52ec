"""Count and time every request the service answers (OPS-METRICS-5), with bounded labels.

One pure-ASGI layer, the outermost of the app's own middleware, so it also sees what
the gate refuses before routing (401, 403, 413), not only what the routes answer. Its
cost per request is two clock reads, a `send` wrapper that notes the status, and a few
dict look-ups: the label children are cached, the route table is built once.

Labels stay bounded (OPS-METRICS-3): ``route`` is the template of a route of the API
document, else ``unmatched``; ``method`` is one of OPS-METRICS-3's list, else
``other``. A raw path is never a label, and never a key of any cache here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from re import Pattern
from time import perf_counter
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploy.metrics import CLIENT_CLOSED_REQUEST, LABELLED_METHODS, OTHER_METHOD
from fastapi_service.core.metrics import REQUEST_DURATION, REQUESTS

UNMATCHED = "unmatched"


class RouteLabels:
    """A request's ``route`` and ``method`` labels.

    The route comes from the app's own API document, because OPS-METRICS-3 names it: a
    label is one of its path templates or ``unmatched`` (so FastAPI's undocumented
    ``/docs`` and ``/openapi.json`` are ``unmatched`` too). The method is one of
    OPS-METRICS-3's list (deploy/metrics.py) or ``other``. Static paths are one dict
    look-up; templated ones are tried in order.
    """

    def __init__(self, templates: Iterable[str]) -> None:
        self.templates = tuple(templates)
        self._static = {t: t for t in self.templates if "{" not in t}
        self._templated: list[tuple[Pattern[str], str]] = [
            (compile_path(t)[0], t) for t in self.templates if "{" in t
        ]

    @classmethod
    def from_openapi(cls, document: Mapping[str, Any]) -> RouteLabels:
        paths: Mapping[str, Mapping[str, Any]] = document.get("paths", {})
        return cls(paths)

    def route(self, path: str) -> str:
        template = self._static.get(path)
        if template is not None:
            return template
        for regex, template in self._templated:
            if regex.match(path):
                return template
        return UNMATCHED

    def method(self, method: str) -> str:
        return method if method in LABELLED_METHODS else OTHER_METHOD


class RequestMetricsMiddleware:
    """``service_requests_total`` and ``service_request_duration_seconds`` of every request.

    The duration runs until the app returns, which for a stream is after its last byte.
    The status is the one the response started with; an exception before any response
    is the 500 that Starlette's error middleware (outside this one) answers.
    """

    def __init__(self, app: ASGIApp, *, openapi: Callable[[], Mapping[str, Any]]) -> None:
        # Built with the middleware stack, when the app first runs: its routes are all in.
        self.app = app
        self.labels = RouteLabels.from_openapi(openapi())
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._durations = {
            route: REQUEST_DURATION.labels(route) for route in (*self.labels.templates, UNMATCHED)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 0

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        except Exception:
            status = status or 500
            raise
        finally:
            self._observe(scope, status or CLIENT_CLOSED_REQUEST, perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = self.labels.route(scope["path"])
        key = (route, self.labels.method(scope["method"]), status)
        counter = self._counters.get(key)
        if counter is None:  # bounded: templates x methods x statuses
            counter = self._counters[key] = REQUESTS.labels(key[0], key[1], str(status))
        counter.inc()
        self._durations[route].observe(seconds)
