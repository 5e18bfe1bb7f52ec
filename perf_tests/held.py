"""Many streams held open by the service at once: a barrier, not a clock.

The fake service holds each stream before its first event (``hold_after: 0``)
until the test releases the token. The client opens streams in steps; at each
step it waits until the fake has them all in flight (recorded, neither completed
nor aborted), samples the gateway's threads and memory, and goes on. At the last
step the barrier is reached: every stream is open at the same moment. Then the
release lets them all finish, and each must end with ``done``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import load
from harness.fakes import FakeControl
from harness.sampling import MIB, ProcessTree
from perf_tests.bench import Route

STREAM_TIMEOUT = 150.0
BARRIER_TIMEOUT = 60.0
RELEASE_TIMEOUT = 60.0
SAMPLES_PER_LEVEL = 3


def in_flight(fake: FakeControl, token: str) -> int:
    """Requests of ``token`` the fake is answering right now."""
    return sum(1 for r in fake.requests(token) if not r["completed"] and not r["aborted"])


@dataclass
class HeldRun:
    count: int
    levels: list[dict[str, Any]] = field(default_factory=list)
    barrier_reached: bool = False
    barrier_s: float | None = None
    barrier_error: str | None = None
    outcomes: list[load.Outcome] = field(default_factory=list)
    release_wall: float | None = None

    @property
    def ok(self) -> int:
        return sum(o.ok for o in self.outcomes)

    def summary(self) -> dict[str, Any]:
        errors: dict[str, int] = {}
        for o in self.outcomes:
            if not o.ok:
                kind = load.failure(o)
                errors[kind] = errors.get(kind, 0) + 1
        first, last = self.levels[0], self.levels[-1]
        opened = last["open"] - first["open"]
        return {
            "count": self.count,
            "levels": self.levels,
            "kib_per_stream": round((last["rss_mib"] - first["rss_mib"]) * 1024 / opened, 1)
            if opened
            else None,
            "threads_per_stream": round((last["threads"] - first["threads"]) / opened, 3)
            if opened
            else None,
            "barrier_reached": self.barrier_reached,
            "barrier_s": None if self.barrier_s is None else round(self.barrier_s, 3),
            "barrier_error": self.barrier_error,
            "release": {
                "ok": self.ok,
                "failed": len(self.outcomes) - self.ok,
                "errors": errors,
                "wall_s": None if self.release_wall is None else round(self.release_wall, 3),
            },
        }


async def _usage(tree: ProcessTree, opened: int) -> dict[str, Any]:
    samples = []
    for _ in range(SAMPLES_PER_LEVEL):
        samples.append(tree.usage())
        await asyncio.sleep(0.05)  # sampling interval, not synchronisation
    return {
        "open": opened,
        "threads": max(s.threads for s in samples),
        "rss_mib": round(max(s.rss for s in samples) / MIB, 2),
    }


async def hold_streams(
    route: Route, fake: FakeControl, tree: ProcessTree, token: str, levels: Sequence[int]
) -> HeldRun:
    """Open streams up to each level in turn, barrier at each, then release them all."""
    run = HeldRun(count=levels[-1])
    run.levels.append(await _usage(tree, 0))
    raw = route.stream(token)
    connections: list[load.Connection] = []
    tasks: list[asyncio.Future[load.Outcome]] = []
    start = time.perf_counter()
    try:
        for level in levels:
            new = await load.open_connections(route.host, route.port, level - len(tasks))
            connections += new
            tasks += [
                asyncio.ensure_future(
                    load.exchange(c, raw, limit=STREAM_TIMEOUT, check=load.stream_done)
                )
                for c in new
            ]
            try:
                await load.poll_until(
                    lambda: asyncio.to_thread(in_flight, fake, token),
                    lambda n, level=level: n >= level,
                    within=BARRIER_TIMEOUT,
                    interval=0.1,
                    describe=lambda n: f"{n} in flight",
                )
            except TimeoutError as exc:
                run.barrier_error = f"waiting for {level}: {exc}"
                break
            run.levels.append(await _usage(tree, level))
        else:
            run.barrier_reached = True
            run.barrier_s = time.perf_counter() - start
    finally:
        released = time.perf_counter()
        await _release_all(fake, token, tasks)
        run.outcomes = [
            load.Outcome(False, error="unfinished") if t.cancelled() else t.result() for t in tasks
        ]
        run.release_wall = time.perf_counter() - released
        load.close_all(connections)
    return run


async def _release_all(
    fake: FakeControl, token: str, tasks: list[asyncio.Future[load.Outcome]]
) -> None:
    """Release until every stream ended: a stream still on its way is held after a release."""
    deadline = time.monotonic() + RELEASE_TIMEOUT
    pending = {t for t in tasks if not t.done()}
    while pending and time.monotonic() < deadline:
        await asyncio.to_thread(fake.release, token)
        _, pending = await asyncio.wait(pending, timeout=1.0)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
