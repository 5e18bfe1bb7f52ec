"""The gateway's Prometheus metrics (spec/requirements.md, "The metrics"; OPS-METRICS-*).

:class:`Metrics` is a sink of the ``Observe`` layer: it counts each exchange once it
ends, from what the layers that served it noted (gateway/observability/exchange.py).
:class:`PoolSampler` reads the upstream pool once a second. Where the metrics are
served is deploy/metrics.py's business: this module only records them.

Labels stay bounded (OPS-METRICS-3): ``route`` is a template or ``unmatched``
(``Observe.route_of``), ``method`` a known method or ``other``, ``status`` an int.
Under gunicorn each gauge is per live worker (a ``pid`` label the multiprocess
collector adds): the seed asks for utilisation and connections *per worker*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from deploy.metrics import CLIENT_CLOSED_REQUEST, LABELLED_METHODS, OTHER_METHOD
from gateway.observability.exchange import Exchange
from gateway.upstream.transport import PoolStats

logger = logging.getLogger(__name__)

#: Seconds: a JSON answer in milliseconds, a stream up to minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Seconds to a stream's first byte: the service's, then the LLM's, time to first token.
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)

REQUESTS = Counter(
    "gateway_requests_total",
    "Requests the gateway answered, by route template, method and status.",
    ["route", "method", "status"],
)
DURATION = Histogram(
    "gateway_request_duration_seconds",
    "Time from a request's arrival to the last byte of its answer.",
    ["route"],
    buckets=DURATION_BUCKETS,
)
STREAM_TTFB = Histogram(
    "gateway_stream_ttfb_seconds",
    "Time from a stream request's arrival to the first byte of its body.",
    ["route"],
    buckets=TTFB_BUCKETS,
)
RESPONSE_BYTES = Counter(
    "gateway_response_bytes_total", "Body bytes the gateway sent, by route.", ["route"]
)
IN_FLIGHT = Gauge(
    "gateway_requests_in_flight",
    "Requests being answered now (the worker's utilisation).",
    multiprocess_mode="liveall",
)
STREAMS_OPEN = Gauge("gateway_streams_open", "Event streams open now.", multiprocess_mode="liveall")
STREAMS = Counter(
    "gateway_streams_total",
    "Event streams by how they ended: done, error, client_left, drained.",
    ["route", "end"],
)
CLIENT_ABORTS = Counter(
    "gateway_client_aborts_total",
    "Requests whose client left before the answer was complete.",
    ["route"],
)
UPSTREAM_CONNECTIONS = Gauge(
    "gateway_upstream_connections",
    "Connections of the pool to the service, in use or idle (sampled each second).",
    ["state"],
    multiprocess_mode="liveall",
)
UPSTREAM_WAITING = Gauge(
    "gateway_upstream_waiting",
    "Requests waiting for a pooled connection to the service (sampled each second).",
    multiprocess_mode="liveall",
)
UPSTREAM_REQUESTS = Counter(
    "gateway_upstream_requests_total", "Requests the gateway sent to the service."
)
CONNECTIONS_OPENED = Counter(
    "gateway_upstream_connections_opened_total",
    "Connections the gateway opened to the service (reuse rate: 1 - opened / requests).",
)
POOL_EXHAUSTED = Counter(
    "gateway_pool_exhausted_total",
    "503s because no pooled connection to the service came free within the pool timeout.",
)
UPSTREAM_FAILURES = Counter(
    "gateway_upstream_failures_total",
    "Service failures: refused, timeout, broken (connection lost), bad_answer.",
    ["kind"],
)
RATE_LIMITED = Counter(
    "gateway_rate_limited_total", "429s by bucket: a rate bucket, or streams.", ["bucket"]
)


class _Children:
    """``metric.labels(*values)`` memoised: prometheus-client locks on every lookup."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class Metrics:
    """The ``Observe`` sink that counts (one instance per process)."""

    def __init__(self) -> None:
        self._requests = _Children(REQUESTS)
        self._duration = _Children(DURATION)
        self._ttfb = _Children(STREAM_TTFB)
        self._bytes = _Children(RESPONSE_BYTES)
        self._streams = _Children(STREAMS)
        self._aborts = _Children(CLIENT_ABORTS)
        self._failures = _Children(UPSTREAM_FAILURES)
        self._limited = _Children(RATE_LIMITED)

    def opened(self, exchange: Exchange) -> None:
        IN_FLIGHT.inc()

    def streaming(self, exchange: Exchange) -> None:
        STREAMS_OPEN.inc()

    def closed(self, exchange: Exchange) -> None:
        IN_FLIGHT.dec()
        route = exchange.route
        method = exchange.method if exchange.method in LABELLED_METHODS else OTHER_METHOD
        status = str(exchange.status or CLIENT_CLOSED_REQUEST)
        self._requests(route, method, status).inc()
        finished = exchange.finished if exchange.finished is not None else exchange.started
        self._duration(route).observe(finished - exchange.started)
        if exchange.bytes_sent:
            self._bytes(route).inc(exchange.bytes_sent)
        if exchange.client_left:
            self._aborts(route).inc()
        if exchange.streaming:
            STREAMS_OPEN.dec()
            if exchange.first_byte is not None:
                self._ttfb(route).observe(exchange.first_byte - exchange.started)
            end = exchange.stream_end or ("client_left" if exchange.client_left else "error")
            self._streams(route, end).inc()
        if (failure := exchange.upstream_failure) is not None:
            if failure == "pool_exhausted":
                POOL_EXHAUSTED.inc()
            else:
                self._failures(failure).inc()
        if exchange.limited is not None:
            self._limited(exchange.limited).inc()


class PoolSampler:
    """Reads the upstream pool each ``interval`` seconds into the pool gauges and counters.

    The pool's own counters are plain integers (gateway/upstream/transport.py): the
    hot path pays no metric for them, and the counters here move by their deltas.
    """

    def __init__(self, read: Callable[[], PoolStats | None], *, interval: float = 1.0) -> None:
        self._read = read
        self._interval = interval
        self._requests = 0
        self._opened = 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        stats = self._read()
        if stats is None:
            return
        UPSTREAM_CONNECTIONS.labels("in_use").set(stats.in_use)
        UPSTREAM_CONNECTIONS.labels("idle").set(stats.idle)
        UPSTREAM_WAITING.set(stats.waiting)
        # A new pool (a new client on this loop) starts its counters from 0 again.
        if stats.requests < self._requests or stats.connections_opened < self._opened:
            self._requests = self._opened = 0
        UPSTREAM_REQUESTS.inc(stats.requests - self._requests)
        CONNECTIONS_OPENED.inc(stats.connections_opened - self._opened)
        self._requests, self._opened = stats.requests, stats.connections_opened

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pool-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.sample()  # the last requests counted before the process ends

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a metric must never take the worker down
                logger.exception("sampling the upstream pool failed")
            await asyncio.sleep(self._interval)
