"""The gateway's metrics sink and pool sampler (gateway/observability/metrics.py).

The contract suite counts them over HTTP (contract_tests/gateway/test_metrics.py);
these pin the pieces: what one exchange adds, and the sampler's deltas.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from gateway.observability.exchange import (
    Exchange,
    note_limited,
    note_stream_end,
    note_upstream_failure,
)
from gateway.observability.metrics import Metrics, PoolSampler
from gateway.observability.observe import Observe
from gateway.upstream.transport import PoolStats


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Snapshot:
    """Sample values now, to compare with later (the registry is the process's)."""

    def __init__(self, *names: tuple[str, dict[str, str]]) -> None:
        self._names = names
        self._before = [value(n, **labels) for n, labels in names]

    def moved(self) -> list[float]:
        return [
            value(n, **labels) - b
            for (n, labels), b in zip(self._names, self._before, strict=False)
        ]


async def _serve(app: Any, *, path: str = "/api/chat/stream/", method: str = "POST") -> None:
    scope = {"type": "http", "method": method, "path": path, "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    await Observe(app, routes=["/api/chat/", "/api/chat/stream/"], sinks=[Metrics()])(
        scope, receive, send
    )


def _stream_app(end: str, *, complete: bool = True) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        assert value("gateway_streams_open") >= 1
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        note_stream_end(end)  # type: ignore[arg-type]
        if complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


@pytest.mark.asyncio
async def test_a_stream_is_counted_once_by_its_end_and_its_gauges_come_back() -> None:
    route = {"route": "/api/chat/stream/"}
    snapshot = Snapshot(
        ("gateway_requests_total", {**route, "method": "POST", "status": "200"}),
        ("gateway_streams_total", {**route, "end": "done"}),
        ("gateway_streams_total", {**route, "end": "client_left"}),
        ("gateway_stream_ttfb_seconds_count", route),
        ("gateway_response_bytes_total", route),
        ("gateway_client_aborts_total", route),
    )
    await _serve(_stream_app("done"))
    await _serve(_stream_app("client_left", complete=False))
    assert snapshot.moved() == [2, 1, 1, 2, 18, 1]
    assert value("gateway_streams_open") == 0
    assert value("gateway_requests_in_flight") == 0


@pytest.mark.asyncio
async def test_labels_are_bounded_whatever_the_client_sends() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    before = value("gateway_requests_total", route="unmatched", method="other", status="404")
    await _serve(app, path="/no/such/path-1234", method="BREW")
    after = value("gateway_requests_total", route="unmatched", method="other", status="404")
    assert after - before == 1
    assert not [
        s
        for metric in REGISTRY.collect()
        for s in metric.samples
        if any("1234" in v or v == "BREW" for v in s.labels.values())
    ]


@pytest.mark.asyncio
async def test_failures_and_refusals_are_counted_by_kind() -> None:
    def answering(note: Any) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            note()
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        return app

    snapshot = Snapshot(
        ("gateway_pool_exhausted_total", {}),
        ("gateway_upstream_failures_total", {"kind": "timeout"}),
        ("gateway_upstream_failures_total", {"kind": "pool_exhausted"}),
        ("gateway_rate_limited_total", {"bucket": "streams"}),
    )
    await _serve(answering(lambda: note_upstream_failure("pool_exhausted")))
    await _serve(answering(lambda: note_upstream_failure("timeout")))
    await _serve(answering(lambda: note_limited("streams")))
    assert snapshot.moved() == [1, 1, 0, 1]


def test_the_sampler_moves_counters_by_the_pool_s_deltas_and_sets_the_gauges() -> None:
    stats = [PoolStats(3, 1, 2, 10, 2), PoolStats(0, 4, 0, 15, 4), PoolStats(0, 0, 0, 1, 1)]
    sampler = PoolSampler(lambda: stats.pop(0) if stats else None)
    snapshot = Snapshot(
        ("gateway_upstream_requests_total", {}),
        ("gateway_upstream_connections_opened_total", {}),
    )
    sampler.sample()
    assert value("gateway_upstream_connections", state="in_use") == 3
    assert value("gateway_upstream_waiting") == 2
    sampler.sample()
    assert value("gateway_upstream_connections", state="idle") == 4
    assert snapshot.moved() == [15, 4]
    sampler.sample()  # a new pool: its counters start again from 0
    assert snapshot.moved() == [16, 5]
    sampler.sample()  # no client on this loop: nothing changes
    assert snapshot.moved() == [16, 5]


def test_an_exchange_without_an_answer_is_counted_without_a_status() -> None:
    exchange = Exchange("POST", "/api/chat/", started=1.0)
    exchange.finished, exchange.client_left = 2.0, True
    labels = {"route": "/api/chat/", "method": "POST", "status": "499"}  # nginx's code
    before = value("gateway_requests_total", **labels)
    sink = Metrics()
    sink.opened(exchange)
    sink.closed(exchange)
    assert value("gateway_requests_total", **labels) - before == 1
