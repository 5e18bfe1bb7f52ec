"""RSS of a process tree against work done, sampled in a background thread (PERF-1)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

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
