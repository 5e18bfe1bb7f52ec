"""Background samplers: RSS of a process tree against work done (PERF-1), and the
gateway's own metrics over time (the perf report's metrics plot)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from harness.metrics import MetricsUnavailable, read_metrics
from harness.sampling import ProcessTree


@dataclass(frozen=True)
class Sample:
    t: float
    progress: int
    rss: int


class Sampler:
    """Samples a process tree's RSS every ``interval`` seconds in a background thread.

    ``progress`` is read at each sample (e.g. bytes streamed so far), so memory can be
    plotted against work done. The thread stops on :meth:`stop` or after ``max_seconds``.
    """

    def __init__(
        self,
        tree: ProcessTree,
        progress: Callable[[], int] = lambda: 0,
        *,
        interval: float = 0.02,
        max_seconds: float = 300.0,
    ) -> None:
        self.tree = tree
        self.progress = progress
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while time.monotonic() < deadline:
            usage = self.tree.usage()
            self.samples.append(Sample(time.perf_counter(), self.progress(), usage.rss))
            if self._stop.wait(self.interval):
                return

    def wait_for_samples(self, count: int, timeout: float = 5.0) -> None:
        """Block until ``count`` samples exist (a baseline), or fail at the deadline."""
        deadline = time.monotonic() + timeout
        while len(self.samples) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"sampler took {len(self.samples)} samples in {timeout}s")
            time.sleep(self.interval)  # poll interval, not synchronisation

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class MetricsPoint:
    """What the gateway's own metrics said at one instant (OPS-METRICS)."""

    t: float
    streams_open: float
    pool_in_use: float
    pool_idle: float
    pool_waiting: float
    ttfb_count: float
    ttfb_sum: float


class MetricsTimeline:
    """Scrapes the gateway's metrics every ``interval`` seconds in a background thread.

    A scrape that fails is skipped (the gateway is busy; the next one may answer). The
    thread stops on :meth:`stop` or after ``max_seconds``.
    """

    def __init__(self, url: str, *, interval: float = 0.25, max_seconds: float = 300.0) -> None:
        self.url = url
        self.interval = interval
        self.max_seconds = max_seconds
        self.points: list[MetricsPoint] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-timeline", daemon=True)

    def _run(self) -> None:
        started = time.perf_counter()
        deadline = time.monotonic() + self.max_seconds
        while time.monotonic() < deadline:
            try:
                s = read_metrics(self.url, timeout=2.0)
            except MetricsUnavailable:
                self.failures += 1
            else:
                self.points.append(
                    MetricsPoint(
                        t=time.perf_counter() - started,
                        streams_open=s.value("gateway_streams_open"),
                        pool_in_use=s.value("gateway_upstream_connections", state="in_use"),
                        pool_idle=s.value("gateway_upstream_connections", state="idle"),
                        pool_waiting=s.value("gateway_upstream_waiting"),
                        ttfb_count=s.value("gateway_stream_ttfb_seconds_count"),
                        ttfb_sum=s.value("gateway_stream_ttfb_seconds_sum"),
                    )
                )
            if self._stop.wait(self.interval):
                return

    def start(self) -> MetricsTimeline:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
