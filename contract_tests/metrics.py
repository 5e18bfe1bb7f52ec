"""Reading a component's metrics as the OPS-METRICS tests count them (harness/metrics.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from harness.metrics import MetricsUnavailable, Scrape, read_metrics
from harness.system import Running

__all__ = ["SETTLE", "Scrape", "metrics_url", "moved", "scrape", "wait_until"]

#: OPS-METRICS-4: gauges are sampled at least once a second; a test waits this long.
SETTLE = 5.0


def metrics_url(component: Running) -> str:
    """The component's metrics URL, or fail: OPS-METRICS-1 asks for one in the plug file."""
    if component.metrics_url is None:
        pytest.fail(
            f"the plug file's [{component.component.name}] has no `metrics` URL (OPS-METRICS-1)"
        )
    return component.metrics_url


def scrape(component: Running) -> Scrape:
    try:
        return read_metrics(metrics_url(component))
    except MetricsUnavailable as exc:
        pytest.fail(f"{component.name}'s metrics (OPS-METRICS-1): {exc}")


def wait_until(
    component: Running,
    settled: Callable[[Scrape], bool],
    *,
    timeout: float = SETTLE,
) -> Scrape:
    """Scrape until ``settled`` holds (gauges are sampled, not exact at every instant).

    Returns the last scrape whether or not it settled: the caller asserts on it, so a
    failure shows the values it saw.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = scrape(component)
        if settled(last) or time.monotonic() >= deadline:
            return last
        time.sleep(0.1)  # a poll interval, bounded by the deadline above


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How much the sum of ``name`` over ``labels`` moved between two scrapes."""
    return after.value(name, **labels) - before.value(name, **labels)
