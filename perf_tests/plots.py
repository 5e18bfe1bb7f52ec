"""PNG plots of a perf run (matplotlib, headless). Missing matplotlib means no plots, no failure."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

MEMORY = "perf-memory.png"
LATENCY = "perf-latency.png"
THREADS = "perf-threads.png"
GATEWAY_METRICS = "perf-gateway-metrics.png"


def write_all(report_dir: Path, series: dict[str, Any]) -> dict[str, str]:
    """Write the plots there is data for; return {title: file name}."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    written: dict[str, str] = {}
    if series.get("memory"):
        _memory(plt, report_dir / MEMORY, series["memory"])
        written["Gateway RSS growth against bytes streamed (PERF-1)"] = MEMORY
    if series.get("latency"):
        _latency(plt, report_dir / LATENCY, series["latency"])
        written["Small-request latency distribution per path"] = LATENCY
    if series.get("held"):
        _threads(plt, report_dir / THREADS, series["held"])
        written["Gateway threads and RSS against open streams (PERF-3)"] = THREADS
    if series.get("gateway_metrics"):
        _gateway_metrics(plt, report_dir / GATEWAY_METRICS, series["gateway_metrics"])
        written["The 1,000 held streams as the gateway's own metrics saw them"] = GATEWAY_METRICS
    return written


def _memory(plt: Any, path: Path, runs: dict[str, list[tuple[float, float]]]) -> None:
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, (label, points) in zip(axes[0], runs.items(), strict=True):
        xs, ys = zip(*points, strict=True) if points else ((), ())
        ax.plot(xs, ys, linewidth=1.0)
        ax.axhline(16, color="red", linestyle="--", linewidth=0.8, label="PERF-1 bound (16 MiB)")
        ax.set_ylim(bottom=min([0.0, *ys]) - 1, top=max([17.0, *ys]) + 1)
        ax.set_xlabel("MiB streamed through the gateway")
        ax.set_ylabel("gateway RSS growth (MiB)")
        ax.set_title(f"{label} stream")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("Gateway memory while streaming (sampled every 20 ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency(plt: Any, path: Path, routes: dict[str, dict[str, float]]) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels: list[str] = []
    for label, percentiles in routes.items():
        labels = list(percentiles)
        ax.plot(
            range(len(labels)), list(percentiles.values()), marker=".", label=label.replace("`", "")
        )
    ax.set_xticks(range(len(labels)), labels, rotation=45)
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Small JSON requests at concurrency 32")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _threads(plt: Any, path: Path, levels: list[dict[str, float]]) -> None:
    opened = [level["open"] for level in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(opened, [level["threads"] for level in levels], marker="o")
    left.axhline(32, color="red", linestyle="--", linewidth=0.8, label="PERF-3 bound (32)")
    left.set_xlabel("open streams")
    left.set_ylabel("gateway OS threads")
    left.legend()
    right.plot(opened, [level["rss_mib"] for level in levels], marker="o", color="tab:orange")
    right.set_xlabel("open streams")
    right.set_ylabel("gateway RSS (MiB)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    fig.suptitle("Gateway cost per open stream (held by the service)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _gateway_metrics(plt: Any, path: Path, points: list[Any]) -> None:
    """Open streams, pool connections and stream TTFB over time, from the gateway's metrics.

    TTFB is the mean of the streams whose first byte came between two scrapes (the
    histogram's sum and count moved by), plotted where any did.
    """
    ts = [p.t for p in points]
    fig, (streams, pool, ttfb) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    streams.plot(ts, [p.streams_open for p in points], color="tab:blue")
    streams.set_ylabel("open streams")
    pool.plot(ts, [p.pool_in_use for p in points], label="in use", color="tab:orange")
    pool.plot(ts, [p.pool_idle for p in points], label="idle", color="tab:green")
    pool.plot(ts, [p.pool_waiting for p in points], label="waiting", color="tab:red")
    pool.set_ylabel("pool connections")
    pool.legend(loc="upper left")
    mids, means = [], []
    for a, b in itertools.pairwise(points):
        if b.ttfb_count > a.ttfb_count:
            mids.append(b.t)
            means.append((b.ttfb_sum - a.ttfb_sum) / (b.ttfb_count - a.ttfb_count) * 1000)
    ttfb.plot(mids, means, marker=".", linestyle="none", color="tab:purple")
    ttfb.set_ylabel("stream TTFB (ms, mean)")
    ttfb.set_xlabel("seconds since the first scrape")
    for ax in (streams, pool, ttfb):
        ax.grid(True, alpha=0.3)
    fig.suptitle("1,000 held streams, as the gateway's metrics saw them (scraped every 0.25 s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
