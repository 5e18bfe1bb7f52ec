"""What watching the gateway costs: its metrics and JSON request log, on against off.

Two instances of the same gateway (the plug file's ``observed`` and ``unobserved``
baselines) take the same small-request load in alternating rounds, so drift of the
machine (another process, a CPU's clock) falls on both alike. Instance to instance
a gateway varies by several per cent; the median of each side's rounds is compared.
"""

from __future__ import annotations

import statistics

import psutil
import pytest

from perf_tests.bench import Bench
from perf_tests.report import PerfReport

ON, OFF = "observed", "unobserved"
ROUNDS = 6
WARMUP = 0.5
DURATION = 2.0
#: The issue's budget for metrics and request logs together, and what the test asserts
#: (a 2-core machine's noise is several per cent between two instances).
GOAL = 0.05
BOUND = 0.15


def test_metrics_and_the_request_log_cost_little_small_request_throughput(
    bench: Bench, report: PerfReport, load_client: str | None
) -> None:
    routes = {key: bench.route(key) for key in (ON, OFF)}
    missing = [key for key, route in routes.items() if route is None]
    if missing:
        pytest.skip(f"the plug file has no [baselines.{missing[0]}] to compare")
    processes = {key: psutil.Process(bench.pid(key)) for key in (ON, OFF)}
    rps: dict[str, list[float]] = {ON: [], OFF: []}
    cpu_us: dict[str, list[float]] = {ON: [], OFF: []}
    for n in range(ROUNDS):
        for key in (OFF, ON) if n % 2 == 0 else (ON, OFF):
            route = routes[key]
            assert route is not None
            cpu_before = _cpu_seconds(processes[key])
            result = route.small_chats(load_client, duration=DURATION, warmup=WARMUP)
            assert not result.errors, f"{key}: small requests failed: {result.errors}"
            rps[key].append(round(result.rps, 1))
            # The warm-up's requests are not counted in ``result``: its CPU is, a little.
            spent = _cpu_seconds(processes[key]) - cpu_before
            cpu_us[key].append(round(spent / result.requests * 1e6, 1))
            bench.fake.control.reset()
    on, off = statistics.median(rps[ON]), statistics.median(rps[OFF])
    cost = 1 - on / off
    cpu_on, cpu_off = statistics.median(cpu_us[ON]), statistics.median(cpu_us[OFF])
    cpu_cost = 1 - cpu_off / cpu_on
    report.section("observability_cost").update(
        {
            "compared": [ON, OFF],
            "rounds": ROUNDS,
            "seconds_per_round": DURATION,
            "rps_on": rps[ON],
            "rps_off": rps[OFF],
            "median_on": on,
            "median_off": off,
            "cost": round(cost, 4),
            "cpu_us_per_request_on": cpu_us[ON],
            "cpu_us_per_request_off": cpu_us[OFF],
            "cpu_cost": round(cpu_cost, 4),
            "goal": GOAL,
        }
    )
    # A saturated worker's throughput is 1 / its CPU per request: judged on that, the
    # steadier figure (two identical instances differ by ~3 % there, ~10 % in req/s).
    ok = report.check(
        "—",
        "metrics + JSON request log: CPU per small request, on against off (medians of "
        f"{ROUNDS} alternated rounds; the goal is ≤ {GOAL:.0%}, see the report's goals)",
        f"{cpu_cost:+.1%} ({cpu_on:,.0f} vs {cpu_off:,.0f} µs)",
        f"≤ {BOUND:.0%}",
        cpu_cost <= BOUND,
    )
    assert ok, f"metrics and request log cost {cpu_cost:.1%} CPU per request: {cpu_us}"


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system
