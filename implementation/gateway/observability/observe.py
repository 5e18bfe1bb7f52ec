"""The ASGI layer that opens each request's exchange and logs it once answered (OPS-LOG-1).

It sits inside the probes (a supervisor's probes every few seconds would bury the
requests) and outside everything that answers: the body limit, the fast path and
Django. It sees the status and the ``X-Request-ID`` the answer carries, counts the body
bytes sent and the time to the first one, and writes one line per request in a
``finally``, however the request ended. An answer that never completed is a client
that left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from django.urls import Resolver404, resolve

from gateway.asgi.types import ASGIApp, Message, Receive, Scope, Send
from gateway.observability.exchange import CURRENT, Exchange

logger = logging.getLogger("gateway.requests")

_REQUEST_ID = b"x-request-id"
#: Any path no route matched: a raw path is never a label or a log field (unbounded).
UNMATCHED = "unmatched"

Sink = Callable[[Exchange], None]


class Observe:
    def __init__(self, app: ASGIApp, *, routes: Iterable[str], sinks: Iterable[Sink]) -> None:
        self.app = app
        self._routes = frozenset(routes)
        self.sinks = tuple(sinks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.sinks:
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope["method"], self.route_of(scope["path"]), time.perf_counter())
        complete = False

        async def observed_send(message: Message) -> None:
            nonlocal complete
            kind = message["type"]
            if kind == "http.response.start":
                exchange.status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == _REQUEST_ID:
                        exchange.request_id = value.decode("latin-1")
            elif kind == "http.response.body":
                if body := message.get("body", b""):
                    if exchange.first_byte is None:
                        exchange.first_byte = time.perf_counter()
                    exchange.bytes_sent += len(body)
                if not message.get("more_body", False):
                    complete = True
            await send(message)

        token = CURRENT.set(exchange)
        try:
            await self.app(scope, receive, observed_send)
        finally:
            CURRENT.reset(token)
            exchange.finished = time.perf_counter()
            exchange.client_left = not complete
            for sink in self.sinks:
                sink(exchange)

    def route_of(self, path: str) -> str:
        """The route template of ``path``: a proxied route, else Django's pattern."""
        if path in self._routes:
            return path
        try:
            match = resolve(path)
        except Resolver404:
            return UNMATCHED
        if getattr(match.func, "matches_any_path", False) or not match.route:
            return UNMATCHED  # a catch-all view (apps/core/views.py, api_not_found)
        return "/" + match.route


def log_exchange(exchange: Exchange) -> None:
    """The one line of a request: its fields ride on the record (logformat.py renders them)."""
    fields = exchange_fields(exchange)
    logger.info(
        "%s %s %s", exchange.method, exchange.route, fields["status"], extra={"fields": fields}
    )


def exchange_fields(exchange: Exchange) -> dict[str, object]:
    finished = exchange.finished or time.perf_counter()
    ttfb = None if exchange.first_byte is None else exchange.first_byte - exchange.started
    user_id = exchange.user_id
    return {
        "request_id": exchange.request_id,
        "user_id": user_id if user_id is None or isinstance(user_id, int) else str(user_id),
        "method": exchange.method,
        "route": exchange.route,
        "status": exchange.status,
        "upstream_status": exchange.upstream_status,
        "bytes": exchange.bytes_sent,
        "ttfb_ms": None if ttfb is None else round(ttfb * 1000, 2),
        "duration_ms": round((finished - exchange.started) * 1000, 2),
        "stream_end": exchange.stream_end,
        "client_left": exchange.client_left,
    }
