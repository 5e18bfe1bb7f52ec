"""The gateway's resources over the run (RSS, threads, open fds), and the SOAK-1 growth rule.

Growth is the end window against the reference window after warm-up, with a floor for
small numbers; soak_tests/README.md ("The resource check") gives the rule and why.

Descriptors are judged without the established TCP connections: those are the load in
flight (a client socket and an upstream socket per request), a gauge that swings by
tens of percent with the moment's mix. What a leak leaves behind is the rest: sockets
the peer has closed and the gateway has not (CLOSE_WAIT), files, pipes, event fds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import psutil

from harness.sampling import MIB, ProcessTree

#: Judged by the growth rule. ``fds`` counts the descriptors outside established connections.
METRICS = ("rss", "threads", "fds")
#: Shown beside them, not judged: every descriptor, and the established connections alone.
GAUGES = ("all_fds", "connections")
GROWTH_LIMIT = 0.10
WARMUP, REFERENCE_END, END_FROM = 0.2, 0.4, 0.6
#: Smallest growth that may count as a leak, per metric (absolute units).
FLOORS = {"rss": 2 * MIB, "threads": 4, "fds": 8, "all_fds": 4, "connections": 4}
#: How the end window is summarised, per metric (see the module docstring).
END_STATISTIC = {
    "rss": "max",
    "threads": "median",
    "fds": "median",
    "all_fds": "median",
    "connections": "median",
}
INTERVAL = 0.5


@dataclass(frozen=True)
class Sample:
    t: float
    rss: int
    threads: int
    fds: int
    #: Reported, not judged: every open descriptor, and the established TCP connections.
    all_fds: int = 0
    connections: int = 0

    def get(self, metric: str) -> int:
        value: int = getattr(self, metric)
        return value


def measure(tree: ProcessTree, t: float = 0.0) -> Sample:
    """RSS and threads of the tree (harness.sampling) plus its open file descriptors."""
    usage = tree.usage()
    all_fds = connections = 0
    try:
        processes = [tree.root, *tree.root.children(recursive=True)]
    except psutil.NoSuchProcess:
        processes = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            # Connections first: a connection that closes in between is then counted as an
            # open descriptor for one sample, never subtracted from one it no longer holds.
            tcp = process.net_connections(kind="tcp")
            established = sum(1 for c in tcp if c.status == psutil.CONN_ESTABLISHED)
            all_fds += process.num_fds()
            connections += established
    fds = max(all_fds - connections, 0)
    return Sample(t, usage.rss, usage.threads, fds, all_fds, connections)


class ResourceSampler:
    """Samples a process tree every ``interval`` s in a thread (``t``: time.monotonic())."""

    def __init__(
        self, tree: ProcessTree, *, interval: float = INTERVAL, max_seconds: float = 900.0
    ) -> None:
        self.tree = tree
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while time.monotonic() < deadline:
            self.samples.append(measure(self.tree, time.monotonic()))
            if self._stop.wait(self.interval):
                return

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def wait_for_samples(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` samples exist (the idle baseline), or fail at the deadline."""
        deadline = time.monotonic() + timeout
        while len(self.samples) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"sampler took {len(self.samples)} samples in {timeout}s")
            time.sleep(0.05)  # poll interval, not synchronisation

    def relative(self, t0: float) -> list[Sample]:
        """The samples so far with ``t`` relative to ``t0`` (the start of the load)."""
        return [dataclasses.replace(s, t=s.t - t0) for s in list(self.samples)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


@dataclass(frozen=True)
class Growth:
    metric: str
    idle: int | None
    start: int | None
    reference: float | None
    end: float | None
    last: int | None
    growth: float | None
    peak: int | None
    peak_growth: float | None
    allowed: float | None
    floor_applied: bool
    ok: bool
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "judged": self.metric in METRICS,
            "idle": self.idle,
            "start": self.start,
            "after_warmup_median": self.reference,
            "end_statistic": END_STATISTIC[self.metric],
            "end": self.end,
            "end_max": self.peak,
            "last": self.last,
            "growth_pct": _pct(self.growth),
            "peak_growth_pct": _pct(self.peak_growth),
            "allowed_increase": self.allowed,
            "floor_applied": self.floor_applied,
            "ok": self.ok,
            "why": self.why,
        }


def growth(metric: str, samples: list[Sample], duration: float) -> Growth:
    """Judge one metric by the rule in this module's docstring."""
    idle = [s.get(metric) for s in samples if s.t < 0]
    loaded = [s for s in samples if 0 <= s.t <= duration]
    reference = [
        s.get(metric) for s in loaded if WARMUP * duration <= s.t < REFERENCE_END * duration
    ]
    end = [s.get(metric) for s in loaded if s.t >= END_FROM * duration]
    end = [v for v in end if v]  # a sample of a process that had gone: no data
    first = loaded[0].get(metric) if loaded else None
    last = loaded[-1].get(metric) if loaded else None
    if len(reference) < 3 or len(end) < 3:
        why = f"too few samples: {len(reference)} in the reference, {len(end)} at the end"
        return Growth(
            metric, _last(idle), first, None, None, last, None, None, None, None, False, False, why
        )
    ref = float(statistics.median(reference))
    top = float(max(end)) if END_STATISTIC[metric] == "max" else float(statistics.median(end))
    peak = max(end)
    relative = ref * GROWTH_LIMIT
    floor_applied = relative < FLOORS[metric]
    allowed = float(FLOORS[metric]) if floor_applied else relative
    increase = top - ref
    rate = increase / ref if ref else float("inf")
    peak_rate = (peak - ref) / ref if ref else float("inf")
    ok = increase < allowed
    why = (
        f"{END_STATISTIC[metric]} {_show(metric, top)} vs median {_show(metric, ref)}: "
        f"{_show(metric, increase, sign=True)} ({rate:+.1%}; {'<' if ok else '>='} allowed "
        f"{_show(metric, allowed)}{' (floor)' if floor_applied else ''})"
    )
    return Growth(
        metric,
        _last(idle),
        first,
        ref,
        top,
        last,
        rate,
        peak,
        peak_rate,
        allowed,
        floor_applied,
        ok,
        why,
    )


def _show(metric: str, value: float, *, sign: bool = False) -> str:
    text = f"{value / MIB:+.1f}" if metric == "rss" else f"{value:+g}"
    text = text if sign else text.lstrip("+")
    return text + (" MiB" if metric == "rss" else "")


def _pct(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 2)


def _last(values: list[int]) -> int | None:
    return values[-1] if values else None
