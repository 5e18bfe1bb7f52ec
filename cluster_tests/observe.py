"""What the tests watch a cluster with: where requests went, and clients that leave marks.

Every request below opens a connection of its own, so the balancer's round-robin
spreads consecutive requests over the hosts; the balancer's access log says which
host each one reached (``hosts_reached``), and a fake upstream sees each host's
address in ``X-Forwarded-For`` (the forward the launcher puts between a host and a
process on loopback).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from cluster_tests.balancer import upstream_addresses
from cluster_tests.topology import TierRecord
from harness.client import Session
from harness.fakes import Record, header_values
from harness.spec import ProxiedRoute


def hosts_reached(record: TierRecord, *, since: int = 0) -> list[str]:
    """The host addresses the tier's front sent requests to (after the first ``since``)."""
    found = upstream_addresses(Path(record.access_log), record.tier)[since:]
    hosts = []
    for entry in found:
        # "a:p" or, after a retry, "a:p, b:p": the last one answered.
        hosts.append(entry.split(",")[-1].strip().rsplit(":", 1)[0])
    return hosts


def front_requests(record: TierRecord) -> int:
    """How many requests the tier's front has logged so far (a mark for ``hosts_reached``)."""
    return len(upstream_addresses(Path(record.access_log), record.tier))


def forwarded_for(records: list[Record]) -> set[str]:
    """The host addresses a fake saw requests come from."""
    return {value for record in records for value in header_values(record, "x-forwarded-for")}


def post(session: Session, route: ProxiedRoute, token: str) -> httpx.Response:
    """``route``'s valid request on a connection of its own (the balancer may pick any host)."""
    with session.client() as client:
        return route.call(client, token)


@contextlib.contextmanager
def open_stream(session: Session, route: ProxiedRoute, token: str) -> Iterator[httpx.Response]:
    """A stream on a connection of its own, open until the block ends (then the client leaves)."""
    with (
        session.client() as client,
        client.stream(route.method, route.path, **route.payload(token)) as response,
    ):
        yield response


def poll(predicate: Callable[[], bool], *, within: float, every: float, what: str) -> float:
    """Call ``predicate`` until it holds; the seconds it took. Bounded in time and count."""
    started = time.monotonic()
    for _ in range(int(within / every) + 2):
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            break
        time.sleep(every)  # a poll interval, not synchronisation
    raise AssertionError(f"not within {within} s: {what}")


class BackgroundLoad:
    """``clients`` threads calling ``request(client, n)`` until stopped; outcomes by kind.

    ``request`` returns the kind of its outcome ("ok", "status 500", ...); a client
    timeout counts as "hang" and a broken connection as "transport error: <type>".
    Each thread stops after ``seconds`` at the latest, whatever happens.
    """

    def __init__(
        self, clients: int, request: Callable[[int, int], str], *, seconds: float = 120.0
    ) -> None:
        self.request = request
        self.deadline = time.monotonic() + seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._outcomes: Counter[str] = Counter()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, *, within: float = 20.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=within)
            assert not thread.is_alive(), "a load client hung"

    def total(self) -> int:
        with self._lock:
            return sum(self._outcomes.values())

    def outcomes(self) -> Counter[str]:
        with self._lock:
            return Counter(self._outcomes)

    def _run(self, client: int) -> None:
        for n in range(1_000_000):
            if self._stop.is_set() or time.monotonic() > self.deadline:
                return
            try:
                kind = self.request(client, n)
            except httpx.TimeoutException:
                kind = "hang"
            except httpx.TransportError as exc:
                kind = f"transport error: {type(exc).__name__}"
            with self._lock:
                self._outcomes[kind] += 1
