"""Watching a server from outside: memory, threads and CPU of its process tree (psutil).

perf_tests and soak_tests sample the gateway this way; it sees every worker the
server forked, which an in-process probe would not.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

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
