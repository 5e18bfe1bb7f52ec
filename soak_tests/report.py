"""reports/soak.json and reports/soak.md: what the run did and how the gateway held up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.sampling import MIB

UNITS = {
    "rss": ("MiB", MIB),
    "threads": ("", 1),
    "fds": ("", 1),
    "all_fds": ("", 1),
    "connections": ("", 1),
}


def write_report(directory: Path, data: dict[str, Any]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "soak.json"
    md_path = directory / "soak.md"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(data), encoding="utf-8")
    return json_path, md_path


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    unit, scale = UNITS[metric]
    if scale == 1:
        return f"{value:g}"
    return f"{value / scale:.1f} {unit}"


def _verdict(row: dict[str, Any]) -> str:
    if not row.get("judged", True):
        return "(not judged)"
    return "yes" if row["ok"] else "NO"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} %"


def render_markdown(data: dict[str, Any]) -> str:
    run = data["run"]
    lines = [
        "# Soak test (SOAK-1)",
        "",
        f"Verdict: **{'PASS' if data['passed'] else 'FAIL'}**"
        + (f" ({'; '.join(data['failures'])})" if data["failures"] else ""),
        "",
        f"- implementation: `{data['implementation']}`",
        f"- duration: {run['duration_s']} s of load (wall {run['wall_s']} s), "
        f"{run['clients']} clients over {run['users']} users, seed {run['seed']}",
        f"- kinds: {', '.join(run['kinds'])}",
        f"- requests: {run['requests']} ({run['req_per_s']} req/s), "
        f"unexpected: {run['unexpected']}",
        f"- gateway knobs: `{json.dumps(data['gateway_knobs'])}`",
        f"- upstream requests still open after the run: {run.get('upstream_open_after_run')}",
    ]
    if run.get("fatal"):
        lines.append(f"- fatal: {run['fatal']}")
    lines += [
        "",
        "## Requests",
        "",
        "| kind | expected | requests | statuses | unexpected | p50 ms | p99 ms |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for kind, row in data["kinds"].items():
        statuses = ", ".join(f"{s}: {n}" for s, n in row["statuses"].items()) or "-"
        lines.append(
            f"| {kind} | {row['expected']} | {row['requests']} | {statuses} | "
            f"{row['unexpected']} | {row['p50_ms']} | {row['p99_ms']} |"
        )
    lines += [
        "",
        "## Gateway resources",
        "",
        f"Rule: {data['rule']}",
        "",
        "| metric | idle | start | after warm-up (median 20-40 %) | end (60-100 %) "
        "| growth | allowed | ok | peak (max 60-100 %) | peak growth | last | after the run |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in data["metrics"]:
        metric = row["metric"]
        growth = _pct(row["growth_pct"])
        allowed = _fmt(metric, row["allowed_increase"])
        if row["floor_applied"]:
            allowed += " (floor)"
        lines.append(
            f"| {metric} | {_fmt(metric, row['idle'])} | {_fmt(metric, row['start'])} | "
            f"{_fmt(metric, row['after_warmup_median'])} | "
            f"{_fmt(metric, row['end'])} ({row['end_statistic']}) | {growth} | +{allowed} | "
            f"{_verdict(row)} | {_fmt(metric, row['end_max'])} | "
            f"{_pct(row['peak_growth_pct'])} | {_fmt(metric, row['last'])} | "
            f"{_fmt(metric, row.get('after_run'))} |"
        )
    lines += ["", f"## Unexpected outcomes (first {len(data['unexpected'])})", ""]
    if not data["unexpected"]:
        lines.append("None.")
    for item in data["unexpected"]:
        lines.append(
            f"- t={item['at_s']} s, {item['kind']} (client {item['client']}), "
            f"status {item['status']}, {item['elapsed_s']} s: {item['reason']}; "
            f"body `{item['body'][:160]!r}`"
        )
    return "\n".join(lines) + "\n"
