"""Small-request throughput and latency at concurrency 32, per route (reported, not bounded)."""

from __future__ import annotations

from perf_tests.bench import DIRECT, GATEWAY, SMALL_CONCURRENCY, Bench
from perf_tests.report import PerfReport

WARMUP = 1.0
DURATION = 5.0


def test_small_request_throughput_and_latency(
    bench: Bench, report: PerfReport, load_client: str | None
) -> None:
    """POST a small JSON chat for 5 s per route after 1 s of warm-up; report req/s, p50, p99."""
    bench.fake.control.reset()
    section = report.section("small_requests")
    latency = report.series.setdefault("latency", {})
    for route in bench.available():
        result = route.small_chats(load_client, duration=DURATION, warmup=WARMUP)
        section[route.key] = {"concurrency": SMALL_CONCURRENCY, **result.to_json()}
        latency[route.label] = result.percentiles_ms
        bench.fake.control.reset()  # keep the fake's request log small between routes
    for key in (DIRECT, GATEWAY):
        row = section[key]
        assert row["requests"] > 0, f"{key}: no small request succeeded: {row}"
        assert not row["errors"], f"{key}: small requests failed: {row}"
