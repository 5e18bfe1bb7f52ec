"""The benchmark's load patterns over :mod:`harness.loadgen`: bursts and closed-loop load.

A :class:`Connection` is one keep-alive connection; :func:`exchange` never raises
(its :class:`Outcome` says what became of the request), so a burst of thousands
can be counted. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.client import parse_stream
from harness.loadgen import (
    DEFAULT_KEEP,
    READ_LIMIT,
    DataSink,
    ProtocolError,
    Response,
    read_response,
)

T = TypeVar("T")


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, limit=READ_LIMIT
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self, raw: bytes, *, keep: int = DEFAULT_KEEP, on_data: DataSink | None = None
    ) -> Response:
        """Send ``raw`` and read the whole response (the body through ``on_data``, if given)."""
        if not self.is_open:
            await self.connect()
        assert self._reader is not None
        assert self._writer is not None
        sent = time.perf_counter()
        self._writer.write(raw)
        try:
            response = await read_response(self._reader, sent=sent, keep=keep, on_data=on_data)
        except BaseException:
            self.close()
            raise
        if not response.keep_alive:
            self.close()
        return response


# -- outcomes ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What became of one request: a response, or the error that ended it."""

    ok: bool
    status: int | None = None
    error: str | None = None
    response: Response | None = None
    end: float = 0.0


Check = Callable[[Response], bool]


def failure(outcome: Outcome) -> str:
    """A short name for why ``outcome`` failed: the error, the status, or a bad body."""
    if outcome.error is not None:
        return outcome.error
    if outcome.status != 200:
        return f"status {outcome.status}"
    return "bad body"


def status_200(response: Response) -> bool:
    return response.status == 200


def stream_done(response: Response) -> bool:
    """A 200 stream whose last event is ``done``, with no ``error`` and nothing after."""
    if response.status != 200:
        return False
    events, trailing = parse_stream(response.body)
    return (
        bool(events)
        and events[-1].event == "done"
        and all(e.event != "error" for e in events)
        and not trailing.strip()
    )


async def exchange(
    connection: Connection,
    raw: bytes,
    *,
    limit: float,
    check: Check = status_200,
    keep: int = DEFAULT_KEEP,
) -> Outcome:
    """One request on ``connection`` within ``limit`` seconds; never raises (the outcome says)."""
    try:
        async with asyncio.timeout(limit):
            response = await connection.request(raw, keep=keep)
    except TimeoutError:
        connection.close()
        return Outcome(False, error="timeout", end=time.perf_counter())
    except (
        OSError,
        ProtocolError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ValueError,
    ) as exc:
        connection.close()
        return Outcome(False, error=type(exc).__name__, end=time.perf_counter())
    return Outcome(check(response), response.status, None, response, response.end)


async def open_connections(
    host: str, port: int, count: int, *, parallel: int = 200, within: float = 30.0
) -> list[Connection]:
    """``count`` connections, opened ``parallel`` at a time (not to overflow listen backlogs).

    One that fails to open stays closed: its request will try again when it is sent,
    and its outcome records the error.
    """
    gate = asyncio.Semaphore(parallel)
    connections = [Connection(host, port) for _ in range(count)]

    async def one(connection: Connection) -> None:
        async with gate:
            with contextlib.suppress(OSError):
                await connection.connect()

    try:
        async with asyncio.timeout(within):
            await asyncio.gather(*(one(c) for c in connections))
    except BaseException:
        close_all(connections)
        raise
    return connections


def close_all(connections: Sequence[Connection]) -> None:
    for connection in connections:
        connection.close()


# -- load patterns ---------------------------------------------------------------------------------
@dataclass
class BurstResult:
    """N requests sent at once over N pre-opened connections."""

    count: int
    outcomes: list[Outcome]
    start: float
    wall: float

    @property
    def ok(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def errors(self) -> Counter[str]:
        found: Counter[str] = Counter(failure(o) for o in self.outcomes if not o.ok)
        return found

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "ok": self.ok,
            "failed": self.count - self.ok,
            "errors": dict(self.errors),
            "wall_s": round(self.wall, 3),
        }


async def burst(
    host: str,
    port: int,
    raws: Sequence[bytes],
    *,
    limit: float,
    check: Check = status_200,
    parallel_connects: int = 200,
) -> BurstResult:
    """Open one connection per request first, then send them all at once and wait.

    Opening first keeps the listen backlog out of the measurement: the wall time is
    from the first request written to the last response read (or timed out).
    """
    connections = await open_connections(host, port, len(raws), parallel=parallel_connects)
    try:
        return await burst_on(connections, raws, limit=limit, check=check)
    finally:
        close_all(connections)


async def burst_on(
    connections: Sequence[Connection],
    raws: Sequence[bytes],
    *,
    limit: float,
    check: Check = status_200,
) -> BurstResult:
    """Send ``raws[i]`` on ``connections[i]``, all at once, and wait for every answer.

    The connections stay open (keep-alive) for another burst; the caller closes them.
    """
    start = time.perf_counter()
    tasks = [
        asyncio.ensure_future(exchange(c, raw, limit=limit, check=check))
        for c, raw in zip(connections, raws, strict=True)
    ]
    outcomes = list(await asyncio.gather(*tasks))
    end = max((o.end for o in outcomes), default=start)
    return BurstResult(len(raws), outcomes, start, end - start)


@dataclass
class LoadResult:
    """Closed-loop load: requests completed in the measured window and their latencies."""

    concurrency: int
    duration: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def non_200(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


async def closed_loop(
    host: str,
    port: int,
    raw: bytes,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    max_requests: int = 10_000_000,
    limit: float = 10.0,
) -> LoadResult:
    """``concurrency`` workers, each sending ``raw`` again as soon as its answer is read.

    Requests that start after ``warmup`` and end before ``warmup + duration`` count.
    """
    connections = await open_connections(host, port, concurrency)
    result = LoadResult(concurrency, duration)
    begin = time.perf_counter()
    measure_from = begin + warmup
    end = measure_from + duration
    per_worker = max(1, max_requests // concurrency)

    async def worker(connection: Connection) -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            if started >= end:
                return
            outcome = await exchange(connection, raw, limit=limit)
            if outcome.end > end or started < measure_from:
                continue
            if outcome.error is not None:
                result.errors[outcome.error] += 1
            else:
                result.statuses[outcome.status or 0] += 1
                result.latencies.append(outcome.end - started)

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        close_all(connections)
    return result


async def poll_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float,
    interval: float = 0.05,
    describe: Callable[[T], str] = repr,
) -> T:
    """Call ``probe`` until ``done(value)`` holds; TimeoutError describes the last value."""
    deadline = time.monotonic() + within
    value = await probe()
    while not done(value):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {within}s; last: {describe(value)}")
        await asyncio.sleep(interval)  # poll interval, not synchronisation
        value = await probe()
    return value
