"""Bulk SSE streams read as fast as the client can, with the gateway's memory watched."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field

from harness import load, loadgen
from harness.fakes import FakeControl
from harness.sampling import MIB, ProcessTree
from perf_tests.bench import Route
from perf_tests.sampler import Sample, Sampler

CHUNK = 64 * 1024
TAIL = 512
DONE = b"event: done\n"


class Progress:
    """Bytes read so far and the last few of them (the stream must end with ``done``)."""

    __slots__ = ("size", "tail")

    def __init__(self) -> None:
        self.size = 0
        self.tail = b""

    def feed(self, data: bytes, _t: float) -> None:
        self.size += len(data)
        self.tail = data[-TAIL:] if len(data) >= TAIL else (self.tail + data)[-TAIL:]


@dataclass
class StreamRun:
    """One bulk stream: what arrived, how fast, and the memory samples taken meanwhile."""

    total: int
    status: int | None
    size: int
    seconds: float
    tail: bytes
    error: str | None = None
    samples: list[Sample] = field(default_factory=list)
    baseline_rss: int = 0

    @property
    def complete(self) -> bool:
        """All bytes, ending with the ``done`` event: nothing lost, nothing added."""
        return (
            self.error is None
            and self.status == 200
            and self.size == self.total
            and DONE in self.tail
            and self.tail.endswith(b"\n\n")
        )

    @property
    def mib_s(self) -> float:
        return self.size / MIB / self.seconds if self.seconds > 0 else 0.0

    @property
    def peak_rss(self) -> int:
        return max((s.rss for s in self.samples), default=0)

    @property
    def growth(self) -> int:
        return self.peak_rss - self.baseline_rss

    def describe(self) -> str:
        return (
            f"status {self.status}, {self.size} of {self.total} bytes in {self.seconds:.2f} s"
            f"{f', error {self.error}' if self.error else ''}, tail {self.tail[-80:]!r}"
        )


def stream_once(
    route: Route,
    fake: FakeControl,
    total: int,
    *,
    timeout: float = 120.0,
    progress: Progress | None = None,
) -> StreamRun:
    """Stream ``total`` bytes from the fake through ``route``, reading as fast as possible."""
    token = fake.behave(total_bytes=total, chunk_size=CHUNK)
    progress = progress or Progress()
    raw = route.stream(token)

    async def go() -> loadgen.Response:
        connection = load.Connection(route.host, route.port)
        try:
            async with asyncio.timeout(timeout):
                return await connection.request(raw, keep=0, on_data=progress.feed)
        finally:
            connection.close()

    try:
        response = loadgen.run(go())
    except (TimeoutError, OSError, loadgen.ProtocolError) as exc:
        return StreamRun(total, None, progress.size, timeout, progress.tail, type(exc).__name__)
    return StreamRun(total, response.status, progress.size, response.elapsed, progress.tail)


def watched_stream(route: Route, fake: FakeControl, total: int, tree: ProcessTree) -> StreamRun:
    """:func:`stream_once` while sampling ``tree``'s RSS every 20 ms; baseline from before."""
    progress = Progress()
    with Sampler(tree, lambda: progress.size, interval=0.02) as sampler:
        sampler.wait_for_samples(5)
        before = len(sampler.samples)
        run = stream_once(route, fake, total, progress=progress)
        sampler.wait_for_samples(len(sampler.samples) + 2)  # the state right after the end
    run.baseline_rss = int(statistics.median(s.rss for s in sampler.samples[:before]))
    run.samples = sampler.samples[before:]
    return run
