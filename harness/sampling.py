"""Watching a server from outside: resident memory and OS threads of its process tree."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import psutil

MIB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    rss: int
    threads: int


class ProcessTree:
    """A started server and everything it forked (workers), summed."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def usage(self) -> Usage:
        rss = threads = 0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return Usage(0, 0)
        for process in processes:
            with (
                contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied),
                process.oneshot(),
            ):
                rss += process.memory_info().rss
                threads += process.num_threads()
        return Usage(rss, threads)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the tree (what is alive now)."""
        total = 0.0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def settle(
        self, *, busy: Callable[[], bool], timeout: float = 60.0, window: float = 0.25
    ) -> float | None:
        """Wait until the tree uses < 10 % of a core and ``busy()`` is false.

        A burst the client gave up on can keep a server working for a while; the next
        measurement must not share the CPU with that. Returns the seconds waited, or
        None when the deadline passed first.
        """
        start = time.monotonic()
        cpu, when = self.cpu_seconds(), start
        while True:
            time.sleep(window)  # the measuring window of the CPU rate
            now_cpu, now = self.cpu_seconds(), time.monotonic()
            if (now_cpu - cpu) / (now - when) < 0.1 and not busy():
                return now - start
            if now - start >= timeout:
                return None
            cpu, when = now_cpu, now


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
