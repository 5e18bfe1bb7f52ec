"""Readiness: can this process serve requests right now (OPS-PROBE-2, OPS-PROBE-3)?

Each check is a coroutine that raises when its dependency does not answer in time.
A check may be *degraded only*: reported, never failing readiness. Redis is one: while
it is away the gateway keeps serving under the CLUSTER-7 rule, and failing every
gateway's readiness at once on a Redis restart would turn that degraded mode into an
outage. Results are kept for ``ttl`` seconds, and concurrent probes share one run, so
a flood of probes on the public port costs one database query and one service
request per ``ttl``. Draining fails readiness at once, cached or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway.lifecycle.draining import DRAIN, Drain

Check = Callable[[], Awaitable[object]]

OK, FAIL, DEGRADED = "ok", "fail", "degraded"


@dataclass(frozen=True)
class Report:
    ready: bool
    checks: dict[str, str]

    @property
    def failing(self) -> list[str]:
        return [name for name, state in self.checks.items() if state == FAIL]


class Readiness:
    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        degraded_only: frozenset[str] = frozenset(),
        timeout: float = 2.0,
        ttl: float = 1.0,
        drain: Drain = DRAIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = dict(checks)
        self.degraded_only = degraded_only
        self.timeout = timeout
        self.ttl = ttl
        self.drain = drain
        self.clock = clock
        self._last: tuple[float, Report] | None = None
        self._running: asyncio.Future[Report] | None = None

    async def report(self) -> Report:
        if self.drain.draining:
            return Report(False, {"draining": FAIL})
        if self._last is not None and self.clock() - self._last[0] < self.ttl:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run_all())
        report = await asyncio.shield(self._running)
        if self.drain.draining:  # began while the checks ran
            return Report(False, {"draining": FAIL})
        return report

    async def _run_all(self) -> Report:
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(name) for name in names))
        checks = {"draining": OK, **dict(zip(names, results, strict=True))}
        report = Report(FAIL not in checks.values(), checks)
        self._last = (self.clock(), report)
        return report

    async def _run(self, name: str) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                await self.checks[name]()
        except Exception:
            return DEGRADED if name in self.degraded_only else FAIL
        return OK
