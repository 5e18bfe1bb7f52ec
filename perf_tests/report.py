"""Collect every figure of a perf run and write reports/perf.json, perf.md and the plots.

Tests put their measurements into sections of :class:`PerfReport` and record each
asserted bound with :meth:`PerfReport.check`. At the end of the session the
report computes the ratios against the direct baseline of the same run and writes
the files, also when a test failed (then with what was measured).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import resource
from collections.abc import Generator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from perf_tests import plots
from perf_tests.bench import DIRECT, GATEWAY

HERE = Path(__file__).resolve().parent
TIMES = "\u00d7"  # the multiplication sign

PACKAGES = (
    "django",
    "asgiref",
    "uvicorn",
    "uvloop",
    "httptools",
    "httpx",
    "httpcore",
    "starlette",
    "fastapi",
    "gunicorn",
    "psutil",
    "matplotlib",
)


class PerfReport:
    """A pytest plugin: holds the run's figures and writes them when the session ends."""

    def __init__(self, report_dir: Path, plug_name: str) -> None:
        self.report_dir = report_dir
        self.data: dict[str, Any] = {
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "plug": plug_name,
            "environment": environment(),
            "routes": {},
            "checks": [],
            "tests": [],
        }
        self.series: dict[str, Any] = {}  # plot data, not all of it goes to the JSON

    # -- recording ---------------------------------------------------------------------------
    def section(self, name: str) -> dict[str, Any]:
        section: dict[str, Any] = self.data.setdefault(name, {})
        return section

    def check(self, requirement: str, what: str, measured: str, bound: str, ok: bool) -> bool:
        """Record an asserted bound (the test asserts ``ok`` right after)."""
        self.data["checks"].append(
            {
                "requirement": requirement,
                "check": what,
                "measured": measured,
                "bound": bound,
                "ok": bool(ok),
            }
        )
        return bool(ok)

    # -- pytest hooks ------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        rep = yield
        if item.path.parent != HERE:
            return rep  # another suite's test in a combined run
        if rep.when == "call" or (rep.when == "setup" and not rep.passed):
            reqs = [str(a) for m in item.iter_markers("req") for a in m.args]
            message = ""
            if rep.failed:
                crash = getattr(rep.longrepr, "reprcrash", None)
                message = (crash.message if crash else str(rep.longrepr)).splitlines()[0][:300]
            self.data["tests"].append(
                {
                    "test": item.name,
                    "requirements": reqs,
                    "outcome": "error" if rep.when == "setup" else rep.outcome,
                    "message": message,
                    "seconds": round(rep.duration, 2),
                }
            )
        return rep

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.data["tests"]:
            return
        self.write()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.data["tests"]:
            return
        terminalreporter.section("perf")
        for line in summary_table(self.data):
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"report: {self.report_dir / 'perf.md'}")

    # -- writing -----------------------------------------------------------------------------
    def write(self) -> None:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        self.data["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        add_ratios(self.data)
        self.data["plots"] = plots.write_all(self.report_dir, self.series)
        (self.report_dir / "perf.json").write_text(
            json.dumps(_finite(self.data), indent=2) + "\n", encoding="utf-8"
        )
        (self.report_dir / "perf.md").write_text(markdown(self.data), encoding="utf-8")


def environment() -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rlimit_nofile": [soft, hard],
        "packages": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base or math.isnan(value) or math.isnan(base):
        return None
    return round(value / base, 3)


def add_ratios(data: dict[str, Any]) -> None:
    """Every figure against the direct route of the same run."""
    for name, key in (("small_requests", "rps"), ("streams", "mib_s")):
        section = data.get(name, {})
        base = section.get(DIRECT, {}).get(key)
        for row in section.values():
            if isinstance(row, dict) and key in row:
                row["ratio_to_direct"] = _ratio(row[key], base)
    for runs in data.get("concurrent_1s", {}).values():
        base = runs.get(DIRECT, {}).get("wall_s")
        for row in runs.values():
            if isinstance(row, dict) and "wall_s" in row:
                row["wall_ratio_to_direct"] = _ratio(row["wall_s"], base)
    timing = data.get("timing", {})
    base_ttfb = timing.get(DIRECT, {}).get("ttfb_ms", {}).get("median")
    for row in timing.values():
        median = row.get("ttfb_ms", {}).get("median")
        if median is not None and base_ttfb is not None:
            row["ttfb_added_ms"] = round(median - base_ttfb, 3)
    data["goals"] = goals(data)


def goals(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The reference implementation's goals (issues 3 and 12), against this run's figures."""
    found: list[dict[str, Any]] = []

    def add(goal: str, measured: str, met: bool | None) -> None:
        found.append({"goal": goal, "measured": measured, "met": met})

    bursts = data.get("concurrent_1s", {})
    for count, limit in (("1000", 1.6), ("5000", 3.0)):
        row = bursts.get(count, {}).get(GATEWAY)
        if row and "wall_s" in row:
            add(
                f"{int(count):,} concurrent 1-s requests through the gateway in ≤ {limit} s, "
                "zero errors",
                _concurrent_cell(row),
                row["wall_s"] <= limit and row["failed"] == 0,
            )
    held = data.get("held_streams", {}).get("levels", [])
    if held:
        top = held[-1]
        add(
            "≤ 32 gateway threads at 1,000 open streams",
            f"{top['threads']} at {top['open']}",
            top["threads"] <= 32 and top["open"] >= 1000,
        )
    stream = data.get("streams", {}).get(GATEWAY, {}).get("ratio_to_direct")
    if stream is not None:
        add(f"stream throughput ≥ 0.6{TIMES} direct", f"{stream:.2f}{TIMES}", stream >= 0.6)
    small = data.get("small_requests", {})
    gateway = small.get(GATEWAY, {}).get("rps")
    cost = data.get("observability_cost", {})
    variants = set(cost.get("compared", ()))  # the gateway itself, watched or not
    for key, route in data.get("routes", {}).items():
        baseline = small.get(key, {}).get("rps")
        if route.get("baseline") and key not in variants and gateway is not None and baseline:
            add(
                f"small chat requests ahead of `{key}`",
                f"{gateway / baseline:.2f}{TIMES} {key}",
                gateway > baseline,
            )
    if "cpu_cost" in cost:
        add(
            "metrics and the JSON request log cost ≤ 5 % of small-request throughput "
            "(CPU per request, on against off; issue 12)",
            f"{cost['cpu_cost']:.1%} CPU per request; throughput {cost['cost']:.1%} "
            f"({cost['median_on']:,.0f} vs {cost['median_off']:,.0f} req/s)",
            cost["cpu_cost"] <= cost["goal"],
        )
    return found


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# -- markdown --------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f" ({ratio:.2f}{TIMES})"


def _concurrent_cell(row: dict[str, Any] | None) -> str:
    if not row:
        return "—"
    if "not_run" in row:
        return f"not run: {row['not_run']}"
    failed = row["failed"]
    errors = ", ".join(f"{n} {kind}" for kind, n in row["errors"].items())
    tail = "0 errors" if not failed else f"{failed} of {row['count']} failed ({errors})"
    return f"{row['wall_s']:.2f} s, {tail}"


def summary_rows(data: dict[str, Any]) -> list[list[str]]:
    small = data.get("small_requests", {})
    streams = data.get("streams", {})
    c1k = data.get("concurrent_1s", {}).get("1000", {})
    c5k = data.get("concurrent_1s", {}).get("5000", {})
    rows = []
    for key, route in data["routes"].items():
        label = route.get("label", key)
        if not route.get("available", False):
            rows.append([label, route.get("reason", "not measured"), "", "", "", ""])
            continue
        s = small.get(key, {})
        st = streams.get(key, {})
        rows.append(
            [
                label,
                f"{_num(s.get('rps'))}{_times(s.get('ratio_to_direct'))}" if s else "—",
                f"{_num(s.get('p50_ms'), 1)} / {_num(s.get('p99_ms'), 1)} ms" if s else "—",
                _concurrent_cell(c1k.get(key)),
                _concurrent_cell(c5k.get(key)),
                f"{_num(st.get('mib_s'))}{_times(st.get('ratio_to_direct'))}" if st else "—",
            ]
        )
    return rows


SUMMARY_HEAD = [
    "path",
    f"small JSON req/s ({TIMES} direct)",
    "p50 / p99",
    "1,000 concurrent 1-s",
    "5,000 concurrent 1-s",
    f"stream MiB/s ({TIMES} direct)",
]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(head), "|" + "---|" * len(head), *(line(row) for row in rows)]


def summary_table(data: dict[str, Any]) -> list[str]:
    return _table(SUMMARY_HEAD, summary_rows(data))


def markdown(data: dict[str, Any]) -> str:
    env = data["environment"]
    client = data.get("load_client", "unknown")
    out = [
        "# Performance report",
        "",
        f"Plug `{data['plug']}`, {data['generated']}. One run; every ratio is against the "
        "direct route measured in the same run. Throughput drifts ±15 % between runs.",
        "",
        f"Machine: {env['cpus']} CPUs ({env['cpu_model']}), Python {env['python']}, "
        f"{env['platform']}. Small-request load client: {client}.",
        "",
        "## Summary",
        "",
        *summary_table(data),
        "",
        _stream_note(data),
        "",
        "## Assertions",
        "",
    ]
    checks = [
        [c["requirement"], c["check"], c["measured"], c["bound"], "pass" if c["ok"] else "FAIL"]
        for c in data["checks"]
    ]
    out += _table(["requirement", "check", "measured", "bound", "result"], checks) if checks else []
    if data.get("goals"):
        out += ["", "Goals of the reference implementation (issue 3; reported, not asserted):", ""]
        out += _table(
            ["goal", "measured", "met"],
            [[g["goal"], g["measured"], "yes" if g["met"] else "no"] for g in data["goals"]],
        )
    out += ["", "Tests:", ""]
    out += _table(
        ["test", "requirements", "outcome", "s", "message"],
        [
            [t["test"], ", ".join(t["requirements"]) or "—", t["outcome"], str(t["seconds"]),
             t["message"]]
            for t in data["tests"]
        ],
    )  # fmt: skip
    out += ["", *_perf_1(data), "", *_held(data), "", *_timing(data), "", *_plots(data)]
    setup = data.get("setup", {})
    out += ["", "## Setup", ""] + [f"- {k}: {v}" for k, v in setup.items()]
    out += ["", "## Environment", "", "```json", json.dumps(env, indent=2), "```", ""]
    return "\n".join(out)


def _stream_note(data: dict[str, Any]) -> str:
    streams = data.get("streams", {})
    size = next((row.get("bytes") for row in streams.values() if isinstance(row, dict)), None)
    if not size:
        return ""
    return (
        f"Streams: {size // 2**20} MiB of SSE filler in 64 KiB chunks, read as fast as the "
        "client can (best of the runs). 1-s requests: the service answers `POST /chatbot/` "
        "after 1 s; all connections are opened first, then every request is sent at once."
    )


def _perf_1(data: dict[str, Any]) -> list[str]:
    perf = data.get("perf_1")
    if not perf:
        return []
    rows = [
        [
            name,
            _num(run["bytes"] / 2**20),
            _num(run["mib_s"]),
            _num(run["baseline_rss_mib"], 1),
            _num(run["peak_rss_mib"], 1),
            _num(run["growth_mib"], 2),
        ]
        for name, run in perf.get("runs", {}).items()
    ]
    head = ["stream", "MiB", "MiB/s", "RSS before (MiB)", "peak RSS (MiB)", "growth (MiB)"]
    return ["## PERF-1: gateway memory while streaming", "", *_table(head, rows)]


def _held(data: dict[str, Any]) -> list[str]:
    held = data.get("held_streams")
    if not held:
        return []
    rows = [
        [str(level["open"]), str(level["threads"]), _num(level["rss_mib"], 1)]
        for level in held.get("levels", [])
    ]
    release = held.get("release", {})
    lines = [
        "## PERF-2 / PERF-3: streams held open by the service",
        "",
        f"Barrier (the service holds all {held.get('count')} at once): "
        f"{'reached' if held.get('barrier_reached') else 'NOT reached'}"
        f" after {_num(held.get('barrier_s'), 2)} s. After the release: "
        f"{release.get('ok', '—')} of {held.get('count')} complete with `done` "
        f"in {_num(release.get('wall_s'), 2)} s. Per open stream: "
        f"{_num(held.get('kib_per_stream'))} KiB of gateway RSS, "
        f"{_num(held.get('threads_per_stream'), 2)} threads.",
        "",
        *_table(["open streams", "gateway threads", "gateway RSS (MiB)"], rows),
    ]
    return lines


def _timing(data: dict[str, Any]) -> list[str]:
    timing = data.get("timing")
    if not timing:
        return []
    rows = []
    for key, route in data["routes"].items():
        row = timing.get(key)
        if not row:
            continue
        ttfb, gaps = row["ttfb_ms"], row["gap_error_ms"]
        rows.append(
            [
                route.get("label", key),
                f"{_num(ttfb['median'], 2)} / {_num(ttfb['p99'], 2)}",
                _num(row.get("ttfb_added_ms"), 2),
                f"{_num(gaps['median'], 2)} / {_num(gaps['p99'], 2)} / {_num(gaps['max'], 2)}",
                str(row.get("gaps", "—")),
            ]
        )
    head = [
        "path",
        "TTFB median / p99 (ms)",
        "added vs direct (ms)",
        "|gap - 100 ms| median / p99 / max (ms)",
        "gaps",
    ]
    return ["## TTFB and inter-event gaps", "", *_table(head, rows)]


def _plots(data: dict[str, Any]) -> list[str]:
    written = data.get("plots", {})
    if not written:
        return []
    lines = ["## Plots", ""]
    for title, name in written.items():
        lines += [f"![{title}]({name})", ""]
    return lines
