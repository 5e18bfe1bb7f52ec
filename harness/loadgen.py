"""A small, fast HTTP/1.1 load client on raw asyncio streams.

httpx costs hundreds of microseconds of CPU per request; on a 2-core machine the
client would then measure itself. This client sends prebuilt request bytes over
keep-alive connections (one per concurrent worker) and parses only what it must:
the status line, the framing headers, and a Content-Length or chunked body. Run
it under uvloop (:func:`run`) for the lowest cost per request.

Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: StreamReader buffer: large, so bulk streams are read in few, big pieces.
READ_LIMIT = 1 << 20
#: Largest piece read at once from a body.
READ_PIECE = 1 << 18
MAX_HEADER_LINES = 200
MAX_CHUNKS = 10**8
#: Bytes of a body kept for inspection (the rest is only counted).
DEFAULT_KEEP = 64 * 1024

DataSink = Callable[[bytes, float], None]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in a fresh event loop, uvloop when installed (cheaper per request)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def build_request(
    method: str,
    path: str,
    *,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """The raw bytes of one HTTP/1.1 request (keep-alive, Content-Length framed)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + body


class ProtocolError(Exception):
    """The server sent something this client does not understand, or closed early."""


@dataclass
class Response:
    """One response: status, headers, the first ``keep`` body bytes, and timings."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    size: int
    sent: float
    first_byte: float | None
    end: float
    keep_alive: bool

    def header(self, name: str) -> bytes | None:
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k == key:
                return v
        return None

    @property
    def elapsed(self) -> float:
        return self.end - self.sent


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


async def read_response(
    reader: asyncio.StreamReader,
    *,
    sent: float,
    keep: int = DEFAULT_KEEP,
    on_data: DataSink | None = None,
) -> Response:
    """Read one response: status line, headers, then the body as its framing says."""
    try:
        status_line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("connection closed before the status line") from exc
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"bad status line {status_line[:100]!r}")
    status = int(parts[1])
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        headers.append((name, value))
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            lowered = value.lower()
            if b"close" in lowered:
                keep_alive = False
            elif b"keep-alive" in lowered:
                keep_alive = True
    else:
        raise ProtocolError("too many header lines")

    body = Body(keep, on_data)
    if status in (204, 304) or 100 <= status < 200:
        pass
    elif chunked:
        await _read_chunked(reader, body)
    elif length is not None:
        await _read_exactly(reader, length, body)
    else:
        keep_alive = False
        await _read_to_eof(reader, body)
    return Response(
        status=status,
        headers=headers,
        body=b"".join(body.kept),
        size=body.size,
        sent=sent,
        first_byte=body.first_byte,
        end=time.perf_counter(),
        keep_alive=keep_alive,
    )


class Body:
    """Where body bytes go: counted, the first ``keep`` kept, each piece to ``on_data``."""

    __slots__ = ("first_byte", "keep", "kept", "on_data", "size")

    def __init__(self, keep: int, on_data: DataSink | None) -> None:
        self.keep = keep
        self.kept: list[bytes] = []
        self.size = 0
        self.first_byte: float | None = None
        self.on_data = on_data

    def feed(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.first_byte is None:
            self.first_byte = now
        room = self.keep - self.size
        if room > 0:
            self.kept.append(data[:room])
        self.size += len(data)
        if self.on_data is not None:
            self.on_data(data, now)


async def _read_exactly(reader: asyncio.StreamReader, length: int, body: Body) -> None:
    remaining = length
    while remaining > 0:
        data = await reader.read(min(remaining, READ_PIECE))
        if not data:
            raise ProtocolError(f"connection closed with {remaining} body bytes missing")
        remaining -= len(data)
        body.feed(data)


async def _read_chunked(reader: asyncio.StreamReader, body: Body) -> None:
    for _ in range(MAX_CHUNKS):
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError("connection closed inside a chunked body") from exc
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            for _ in range(MAX_HEADER_LINES):  # trailers, then the final blank line
                if await reader.readuntil(b"\r\n") == b"\r\n":
                    return
            raise ProtocolError("too many trailer lines")
        await _read_exactly(reader, size, body)
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
    raise ProtocolError("too many chunks")


async def _read_to_eof(reader: asyncio.StreamReader, body: Body) -> None:
    for _ in range(MAX_CHUNKS):
        data = await reader.read(READ_PIECE)
        if not data:
            return
        body.feed(data)


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
        start = time.perf_counter()
        tasks = [
            asyncio.ensure_future(exchange(c, raw, limit=limit, check=check))
            for c, raw in zip(connections, raws, strict=True)
        ]
        outcomes = list(await asyncio.gather(*tasks))
        end = max((o.end for o in outcomes), default=start)
        return BurstResult(len(raws), outcomes, start, end - start)
    finally:
        close_all(connections)


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


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, by linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


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
