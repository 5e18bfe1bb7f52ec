"""The raw HTTP/1.1 client the load generators (perf_tests, soak_tests) build on.

httpx costs hundreds of microseconds of CPU per request; on a 2-core machine the
client would then measure itself. Here requests are prebuilt bytes and a response is
parsed only as far as its framing needs. :func:`run` runs a load under uvloop.
Every loop is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
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


# -- statistics ---------------------------------------------------------------------------------
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
