"""PERF-1 and stream throughput: bulk SSE through the gateway, the peers and directly."""

from __future__ import annotations

import pytest

from harness.sampling import MIB, ProcessTree
from perf_tests.bench import GATEWAY, Bench
from perf_tests.report import PerfReport
from perf_tests.streams import StreamRun, stream_once, watched_stream

SMALL = 64 * MIB
LARGE = 1024 * MIB
WARM = 8 * MIB
COMPARE = 256 * MIB
RUNS = 3  # best of: the machine is shared and noisy
MAX_GROWTH = 16 * MIB
MAX_DIFFERENCE = 4 * MIB
PLOT_POINTS = 400


def _mib(n: float) -> float:
    return round(n / MIB, 2)


def _points(run: StreamRun) -> list[tuple[float, float]]:
    """(MiB streamed, RSS growth MiB), thinned for the plot and the JSON."""
    step = max(1, len(run.samples) // PLOT_POINTS)
    return [(_mib(s.progress), _mib(s.rss - run.baseline_rss)) for s in run.samples[::step]]


@pytest.mark.req("PERF-1")
def test_perf_1_streaming_1_gib_keeps_the_gateway_memory_flat(
    bench: Bench, report: PerfReport
) -> None:
    gateway = bench.route(GATEWAY)
    assert gateway is not None
    assert bench.gateway is not None
    fake = bench.fake.control
    fake.reset()
    tree = ProcessTree(bench.gateway.process.pid)
    warm = stream_once(gateway, fake, WARM)  # first use: imports, pools, buffers
    assert warm.complete, f"warm-up stream: {warm.describe()}"

    runs = {"64 MiB": watched_stream(gateway, fake, SMALL, tree)}
    runs["1 GiB"] = watched_stream(gateway, fake, LARGE, tree)

    section = report.section("perf_1")
    section["runs"] = {
        name: {
            "bytes": run.total,
            "received": run.size,
            "complete": run.complete,
            "seconds": round(run.seconds, 3),
            "mib_s": round(run.mib_s, 1),
            "baseline_rss_mib": _mib(run.baseline_rss),
            "peak_rss_mib": _mib(run.peak_rss),
            "growth_mib": _mib(run.growth),
            "samples": len(run.samples),
            "rss_growth_by_mib_streamed": _points(run),
        }
        for name, run in runs.items()
    }
    report.series["memory"] = {name: _points(run) for name, run in runs.items()}

    for name, run in runs.items():
        assert run.complete, f"{name} through the gateway: {run.describe()}"
    small, large = runs["64 MiB"], runs["1 GiB"]
    difference = abs(large.growth - small.growth)
    flat = report.check(
        "PERF-1",
        "peak RSS growth streaming 1 GiB",
        f"{_mib(large.growth)} MiB",
        "≤ 16 MiB",
        large.growth <= MAX_GROWTH,
    )
    same = report.check(
        "PERF-1",
        "|growth(1 GiB) - growth(64 MiB)|",
        f"{_mib(difference)} MiB",
        "≤ 4 MiB",
        difference <= MAX_DIFFERENCE,
    )
    assert flat, f"gateway RSS grew {_mib(large.growth)} MiB streaming 1 GiB (bound 16 MiB)"
    assert same, (
        f"growth for 1 GiB ({_mib(large.growth)} MiB) and 64 MiB ({_mib(small.growth)} MiB) "
        f"differ by {_mib(difference)} MiB (bound 4 MiB): memory grows with the stream"
    )


def test_stream_throughput_per_path(bench: Bench, report: PerfReport) -> None:
    """MiB/s of a 256 MiB stream per route (best of three), for the ratios against direct."""
    fake = bench.fake.control
    fake.reset()
    section = report.section("streams")
    incomplete = []
    for route in bench.available():
        runs = [stream_once(route, fake, COMPARE) for _ in range(RUNS)]
        best = max(runs, key=lambda r: r.mib_s if r.complete else 0.0)
        section[route.key] = {
            "bytes": COMPARE,
            "mib_s": round(best.mib_s, 1) if best.complete else None,
            "runs_mib_s": [round(r.mib_s, 1) for r in runs],
            "complete": [r.complete for r in runs],
        }
        incomplete += [f"{route.key}: {r.describe()}" for r in runs if not r.complete]
    assert not incomplete, "streams did not arrive whole:\n" + "\n".join(incomplete)
