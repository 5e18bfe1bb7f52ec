"""The soak load: N asyncio clients on raw keep-alive connections, each looping over the mix.

One client = one HTTP/1.1 connection (reopened when the gateway closes it or the client
leaves on purpose). Bytes are prebuilt and parsed with :mod:`harness.loadgen`, which
costs far less CPU per request than httpx: on two cores the load client must not be what
limits the gateway. Every loop is bounded in count and time; each request by its own
deadline, the whole run by ``duration`` plus the longest request deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.loadgen import (
    READ_LIMIT,
    ProtocolError,
    Response,
    percentile,
    read_response,
)
from soak_tests.mix import KINDS, Context, Kind, Planned, judge, longest_deadline, pick

#: Upper bound on requests per client (the run normally ends by time long before).
MAX_REQUESTS_PER_CLIENT = 1_000_000
#: How many unexpected outcomes are kept with details (all are counted).
KEEP_UNEXPECTED = 20
#: Largest number of reads while waiting for the first event of an aborted stream.
MAX_ABORT_READS = 1000


class LeftOnPurpose(Exception):
    """Raised to stop reading a stream after its first event (the client aborts)."""


@dataclass
class Unexpected:
    kind: str
    client: int
    at: float
    elapsed: float
    status: int | None
    reason: str
    body: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "client": self.client,
            "at_s": round(self.at, 3),
            "elapsed_s": round(self.elapsed, 3),
            "status": self.status,
            "reason": self.reason,
            "body": self.body,
        }


@dataclass
class Tally:
    """Everything the clients saw, per request kind."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected_count: Counter[str] = field(default_factory=Counter)
    unexpected: list[Unexpected] = field(default_factory=list)
    #: time.monotonic() when the first client started (set by run_clients).
    t0: float = 0.0

    def record(self, planned: Planned, status: int | None, elapsed: float) -> None:
        self.requests[planned.kind] += 1
        self.statuses[planned.kind][str(status) if status is not None else "none"] += 1
        self.latencies[planned.kind].append(elapsed)

    def fail(self, item: Unexpected) -> None:
        self.unexpected_count[item.kind] += 1
        if len(self.unexpected) < KEEP_UNEXPECTED:
            self.unexpected.append(item)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def total_unexpected(self) -> int:
        return sum(self.unexpected_count.values())

    def per_kind(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for kind in [k.name for k in KINDS]:
            values = self.latencies.get(kind, [])
            rows[kind] = {
                "requests": self.requests.get(kind, 0),
                "statuses": dict(sorted(self.statuses.get(kind, Counter()).items())),
                "unexpected": self.unexpected_count.get(kind, 0),
                "p50_ms": _ms(percentile(values, 50)) if values else None,
                "p99_ms": _ms(percentile(values, 99)) if values else None,
            }
        return rows


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class Client:
    """One simulated browser: one connection, a seeded random walk over the mix."""

    def __init__(
        self, index: int, ctx: Context, tally: Tally, seed: int, t0: float, kinds: Sequence[Kind]
    ) -> None:
        self.index = index
        self.kinds = kinds
        self.ctx = ctx
        self.tally = tally
        self.rng = random.Random(seed * 100_003 + index)  # a reproducible mix, not crypto
        self.t0 = t0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, stop_at: float) -> None:
        for n in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= stop_at:
                return
            kind = pick(self.rng, self.kinds)
            planned = kind.build(self.ctx, self.rng, f"c{self.index}n{n}")
            await self.one(planned)

    async def one(self, planned: Planned) -> None:
        started = time.monotonic()
        status: int | None = None
        reason: str | None
        body = b""
        try:
            async with asyncio.timeout(planned.deadline):
                if planned.stream == "abort":
                    status, reason, body = await self._first_event(planned)
                else:
                    response = await self._exchange(planned.raw)
                    status, body = response.status, response.body
                    reason = judge(planned, response)
        except TimeoutError:
            self.close()
            reason = f"no complete answer within its deadline of {planned.deadline:g} s"
        except (OSError, ProtocolError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            reason = f"{type(exc).__name__}: {exc}"[:200]
        elapsed = time.monotonic() - started
        self.tally.record(planned, status, elapsed)
        if reason is not None:
            text = body[:300].decode("utf-8", errors="replace")
            at = started - self.t0
            self.tally.fail(Unexpected(planned.kind, self.index, at, elapsed, status, reason, text))

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.writer is None or self.writer.is_closing() or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.ctx.host, self.ctx.port, limit=READ_LIMIT
            )
        return self.reader, self.writer

    async def _exchange(self, raw: bytes) -> Response:
        reader, writer = await self._open()
        writer.write(raw)
        try:
            response = await read_response(reader, sent=time.perf_counter())
        except BaseException:
            self.close()
            raise
        if not response.keep_alive:
            self.close()
        return response

    async def _first_event(self, planned: Planned) -> tuple[int, str | None, bytes]:
        """Read the head and the body up to the first event, then leave (close)."""
        reader, writer = await self._open()
        writer.write(planned.raw)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status != planned.expect_status:
                return status, f"status {status}, expected {planned.expect_status}", head
            data = b""
            for _ in range(MAX_ABORT_READS):
                piece = await reader.read(65536)
                if not piece:
                    return status, "stream closed before its first event", data
                data += piece
                if b"\n\n" in data:
                    break
            first = data.split(b"\n\n", 1)[0]
            reason = None if b"event: token" in first else f"first event was {first[-80:]!r}"
            return status, reason, data
        finally:
            self.close()  # the point of this kind: the client goes away mid-stream

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_clients(
    ctxs: list[Context],
    clients: int,
    duration: float,
    seed: int,
    tally: Tally,
    kinds: Sequence[Kind] = KINDS,
) -> float:
    """Run ``clients`` clients for ``duration`` s (sessions assigned round-robin) into ``tally``.

    Returns when the last answer is in, or raises TimeoutError at the run's deadline:
    ``duration`` plus the longest deadline of a request plus 5 s.
    """
    t0 = time.monotonic()
    tally.t0 = t0
    stop_at = t0 + duration
    longest = max(longest_deadline(ctx.read_timeout) for ctx in ctxs)
    members = [Client(i, ctxs[i % len(ctxs)], tally, seed, t0, kinds) for i in range(clients)]
    try:
        async with asyncio.timeout(duration + longest + 5.0):
            await asyncio.gather(*(c.run(stop_at) for c in members))
    finally:
        for client in members:
            client.close()
    return time.monotonic() - t0
