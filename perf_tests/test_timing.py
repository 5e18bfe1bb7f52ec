"""Time to first byte and gaps between events, per route (reported, not bounded).

The contract suite asserts GW-TIMING-1/2 on a quiet machine; here the same
quantities are measured next to the peers, for the report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from harness import load, loadgen
from perf_tests.bench import Bench, Route
from perf_tests.report import PerfReport

WARM = 5
TTFB_SAMPLES = 30
EVENTS = 10
INTERVAL = 0.1
STREAMS = 10
TIMEOUT = 30.0


@dataclass
class EventClock:
    """When each event's terminating blank line arrived."""

    buffer: bytes = b""
    times: list[float] = field(default_factory=list)

    def feed(self, data: bytes, now: float) -> None:
        seen = self.buffer.count(b"\n\n")
        self.buffer += data
        self.times += [now] * (self.buffer.count(b"\n\n") - seen)


async def _ttfb(route: Route) -> list[float]:
    """Sequential default streams on one keep-alive connection: first body byte - sent."""
    connection = load.Connection(route.host, route.port)
    raw = route.stream("ttfb")
    found: list[float] = []
    try:
        for n in range(WARM + TTFB_SAMPLES):
            async with asyncio.timeout(TIMEOUT):
                response = await connection.request(raw)
            assert load.stream_done(response), f"{route.key}: bad stream {response.body[:300]!r}"
            if n >= WARM and response.first_byte is not None:
                found.append(response.first_byte - response.sent)
    finally:
        connection.close()
    return found


async def _gaps(route: Route, token: str, streams: int) -> list[float]:
    """Concurrent streams of events emitted 100 ms apart: the gaps as they arrive."""

    async def one() -> list[float]:
        clock = EventClock()
        connection = load.Connection(route.host, route.port)
        try:
            async with asyncio.timeout(TIMEOUT):
                response = await connection.request(route.stream(token), on_data=clock.feed)
        finally:
            connection.close()
        assert load.stream_done(response), f"{route.key}: bad stream {response.body[:300]!r}"
        assert len(clock.times) == EVENTS + 1, f"{route.key}: {len(clock.times)} events"
        return [b - a for a, b in zip(clock.times, clock.times[1:], strict=False)]

    runs = await asyncio.gather(*(one() for _ in range(streams)))
    return [gap for run in runs for gap in run]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "median": round(loadgen.median(values) * 1000, 3),
        "p99": round(loadgen.percentile(values, 99) * 1000, 3),
        "max": round(max(values, default=float("nan")) * 1000, 3),
    }


def test_ttfb_and_event_gaps(bench: Bench, report: PerfReport) -> None:
    fake = bench.fake.control
    fake.reset()
    token = fake.behave(events=EVENTS, interval=INTERVAL)
    section = report.section("timing")
    for route in bench.available():
        ttfb = loadgen.run(_ttfb(route))
        gaps = loadgen.run(_gaps(route, token, 2 if bench.is_baseline(route.key) else STREAMS))
        errors = [abs(gap - INTERVAL) for gap in gaps]
        section[route.key] = {
            "ttfb_ms": _ms(ttfb),
            "gap_ms": _ms(gaps),
            "gap_error_ms": _ms(errors),
            "gaps": len(gaps),
        }
