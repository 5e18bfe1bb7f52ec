"""The ASGI layer that opens each request's exchange and hands it to its sinks: the
metrics (gateway/observability/metrics.py, OPS-METRICS) and the request log (OPS-LOG-1).

It sits inside the probes (a supervisor's probes every few seconds would bury the
requests) and outside everything that answers: the body limit, the fast path and
Django. It sees the status and the ``X-Request-ID`` the answer carries, whether it is
an event stream, counts the body bytes sent and the time to the first one, and closes
the exchange in a ``finally``, however the request ended. An answer that never
completed is a client that left.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from django.urls import Resolver404, resolve

from gateway.asgi.types import ASGIApp, Message, Receive, Scope, Send
from gateway.observability.exchange import CURRENT, Exchange

logger = logging.getLogger("gateway.requests")

_REQUEST_ID = b"x-request-id"
_CONTENT_TYPE = b"content-type"
_EVENT_STREAM = b"text/event-stream"
#: Any path no route matched: a raw path is never a label or a log field (unbounded).
UNMATCHED = "unmatched"


class Sink(Protocol):
    """What ``Observe`` tells of each exchange: opened, streaming (an event stream
    began), closed (answered, or the client left)."""

    def opened(self, exchange: Exchange) -> None: ...

    def streaming(self, exchange: Exchange) -> None: ...

    def closed(self, exchange: Exchange) -> None: ...


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
        sinks = self.sinks
        complete = False

        async def observed_send(message: Message) -> None:
            nonlocal complete
            kind = message["type"]
            if kind == "http.response.start":
                exchange.status = message["status"]
                for name, value in message.get("headers", ()):
                    name = name.lower()
                    if name == _REQUEST_ID:
                        exchange.request_id = value.decode("latin-1")
                    elif name == _CONTENT_TYPE and value.startswith(_EVENT_STREAM):
                        exchange.streaming = True
                        for sink in sinks:
                            sink.streaming(exchange)
            elif kind == "http.response.body":
                if body := message.get("body", b""):
                    if exchange.first_byte is None:
                        exchange.first_byte = time.perf_counter()
                    exchange.bytes_sent += len(body)
                if not message.get("more_body", False):
                    complete = True
            await send(message)

        for sink in sinks:
            sink.opened(exchange)
        token = CURRENT.set(exchange)
        try:
            await self.app(scope, receive, observed_send)
        finally:
            CURRENT.reset(token)
            exchange.finished = time.perf_counter()
            exchange.client_left = not complete
            for sink in sinks:
                sink.closed(exchange)

    def route_of(self, path: str) -> str:
        """The route template of ``path``: a proxied route, else Django's pattern."""
        if path in self._routes:
            return path
        return _django_route(path)


@functools.lru_cache(maxsize=1024)  # bounded: raw paths are the client's to choose
def _django_route(path: str) -> str:
    try:
        match = resolve(path)
    except Resolver404:
        return UNMATCHED
    if getattr(match.func, "matches_any_path", False) or not match.route:
        return UNMATCHED  # a catch-all view (apps/core/views.py, api_not_found)
    return "/" + match.route


class RequestLog:
    """The ``Observe`` sink that writes one line per request (OPS-LOG-1), in batches.

    A line is written at most :attr:`delay` seconds after its request ended, together
    with the others that ended meanwhile: one at a time, amid the requests, a line cost
    55 µs of CPU in the server (10 % of a small request), though 20 µs in a loop; in
    batches it runs with warm caches. :meth:`flush` writes what is pending (the
    lifespan's shutdown calls it, so a stopping worker loses no line).
    """

    def __init__(self, *, delay: float = 0.05) -> None:
        self.delay = delay
        self._pending: list[Exchange] = []
        self._timer: asyncio.TimerHandle | None = None

    def opened(self, exchange: Exchange) -> None:
        pass

    def streaming(self, exchange: Exchange) -> None:
        pass

    def closed(self, exchange: Exchange) -> None:
        self._pending.append(exchange)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for exchange in pending:
            log_exchange(exchange)


def log_exchange(exchange: Exchange) -> None:
    """The one line of a request: its fields ride on the record (logformat.py renders them).

    The record is made and handled directly: ``logger.info`` would also walk the stack
    for the caller's file and line (a third of the line's cost), which no format shows.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = exchange_fields(exchange)
    args = (exchange.method, exchange.route, fields["status"])
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 0, "%s %s %s", args, None, extra={"fields": fields}
    )
    logger.handle(record)


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
