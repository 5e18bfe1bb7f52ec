"""GW-LEAK-1, GW-FLOW-1, GW-OVERLOAD-1: the gateway's resources stay bounded.

Aborted requests of every kind must give back their pool slots and upstream
connections; a slow reader must slow the service down instead of filling the
gateway's memory; a full pool must be answered with 503 at once, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

from contract_tests.gateway.conftest import (
    MIB,
    RawRequest,
    ResponseParser,
    assert_not_contacted,
    problem,
    raw_request_bytes,
)
from harness.client import Session, async_http_client, http_client, parse_stream
from harness.fakes import FakeControl, new_token
from harness.processes import LOOPBACK
from harness.spec import proxied_routes, route
from harness.system import Fake, Harness, Running, User

KIB = 1024
CHAT = route("chat")
STREAM = route("chat_stream")


def message(token: str) -> bytes:
    return json.dumps({"message": f"hello {token}"}).encode()


# -- GW-LEAK-1 ------------------------------------------------------------------------------------
#: The three kinds of GW-CANCEL, 1,000 aborted requests in all. The streams that fill
#: the pool for the queued kind are left mid-stream too, and count there.
POOL_SIZE = 20
KEEPALIVE = 10
QUEUE_ROUNDS = 8
WAITERS = 25  # per round, queued behind POOL_SIZE held streams
BEFORE_FIRST_BYTE = 400
MID_STREAM = 1000 - BEFORE_FIRST_BYTE - QUEUE_ROUNDS * (POOL_SIZE + WAITERS)
CONCURRENCY = 50
#: The whole churn must end well within this (it takes ~20 s on 2 cores; a gateway that
#: leaks slots stalls until the deadline, so it is also what a failing run costs).
CHURN_DEADLINE = 60.0


@dataclass
class Churn:
    """A gateway with its own fake service, so every upstream connection is the gateway's."""

    gateway: Running
    fake: Fake
    session: Session
    control: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.control = async_http_client(self.fake.url)

    async def records(self, token: str) -> list[dict[str, object]]:
        response = await self.control.get("/_control/requests", params={"match": token})
        response.raise_for_status()
        records: list[dict[str, object]] = response.json()
        return records

    async def behave(self, **fields: object) -> str:
        token = new_token()
        response = await self.control.post("/_control/behaviours", json={"match": token, **fields})
        response.raise_for_status()
        return token

    async def wait_records(
        self, token: str, predicate: Callable[[list[dict[str, object]]], bool], seconds: float
    ) -> list[dict[str, object]]:
        deadline = time.monotonic() + seconds
        while True:
            records = await self.records(token)
            if predicate(records):
                return records
            assert time.monotonic() < deadline, (
                f"fake service: condition on {token} not met within {seconds}s "
                f"({len(records)} records, {sum(bool(r['aborted']) for r in records)} aborted)"
            )
            await asyncio.sleep(0.05)  # poll interval, not synchronisation

    async def assert_absent(self, token: str, seconds: float, why: str) -> None:
        """A bounded wait for absence: ``token`` must not reach the service for ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            seen = await self.records(token)
            assert not seen, f"{why}: {len(seen)} reached the service"
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.05)  # poll interval, not synchronisation

    @contextlib.asynccontextmanager
    async def browser(self, token: str, path: str = STREAM.path) -> AsyncIterator[AsyncBrowser]:
        """A raw connection that sent its request; aborted (reset) on exit."""
        reader, writer = await asyncio.open_connection(LOOPBACK, self.gateway.port)
        writer.write(
            raw_request_bytes(
                self.session.base_url, path, message(token), list(self.session.headers())
            )
        )
        try:
            yield AsyncBrowser(reader)
        finally:
            writer.transport.abort()


@dataclass
class AsyncBrowser:
    reader: asyncio.StreamReader
    response: ResponseParser = field(default_factory=ResponseParser)

    async def first_event(self) -> None:
        while not self.response.events:
            data = await self.reader.read(65536)
            assert data, f"the stream ended before its first event ({self.response.status})"
            self.response.feed(data)
        assert self.response.status == 200, self.response.status
        assert self.response.events[0].event == "token", self.response.events


@pytest.fixture
def churn(harness: Harness, users: list[User]) -> Iterator[Churn]:
    fake = harness.start_fake_service()
    try:
        gateway = harness.start_gateway(
            fake.url,
            users,
            max_connections=str(POOL_SIZE),
            max_keepalive=str(KEEPALIVE),
            pool_timeout="30",
            adapt=("max_keepalive",),  # a fixed keep-alive limit is what the test checks against
            read_timeout="30",
        )
        try:
            yield Churn(gateway, fake, Session.of(gateway.url, users[0]))
        finally:
            gateway.process.stop()
    finally:
        fake.process.stop()


async def abort_mid_stream(churn: Churn, token: str, count: int) -> None:
    """``count`` streams, each left right after its first event (CONCURRENCY at a time)."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with limit, churn.browser(f"{token} #{n}") as browser:
            await browser.first_event()

    await asyncio.gather(*(one(n) for n in range(count)))


async def abort_before_first_byte(churn: Churn, token: str, count: int) -> None:
    """``count`` requests the service holds unanswered, left once the service has them.

    Each holds a pooled connection while it waits, so they go a pool's worth at a time.
    """
    for start in range(0, count, POOL_SIZE):
        size = min(POOL_SIZE, count - start)
        async with contextlib.AsyncExitStack() as stack:
            browsers = [
                await stack.enter_async_context(churn.browser(f"{token} #{start + n}"))
                for n in range(size)
            ]
            await churn.wait_records(token, lambda r, n=start + size: len(r) >= n, seconds=30)
            assert all(b.response.status is None for b in browsers)
        # leaving the stack aborted them all


async def abort_in_queue(churn: Churn, holder: str, token: str) -> None:
    """Rounds of: fill the pool with held streams, queue requests behind them, then
    leave all of them at once.

    Leaving together is the hard case (httpcore #1093): a holder's slot frees while a
    waiter is being cancelled, and the pool may hand the waiter a new connection it
    never opens, a slot lost for good.
    """
    for round_ in range(QUEUE_ROUNDS):
        async with contextlib.AsyncExitStack() as stack:
            holders = [
                await stack.enter_async_context(churn.browser(f"{holder} #{round_}.{n}"))
                for n in range(POOL_SIZE)
            ]
            await asyncio.gather(*(b.first_event() for b in holders))
            for n in range(WAITERS):
                await stack.enter_async_context(churn.browser(f"{token} #{round_}.{n}", CHAT.path))
            # The queue is invisible at the service: give the waiters a bounded moment
            # to reach it, during which none of them may get through.
            await churn.assert_absent(token, 0.5, "a request queued behind a full pool")
        # leaving the stack reset all 45 connections in one go, waiters first


async def assert_whole_pool_usable(churn: Churn, within: float) -> None:
    """POOL_SIZE streams held open at once all start: not one slot was lost."""
    token = await churn.behave(events=2, hold_after=1)
    async with contextlib.AsyncExitStack() as stack:
        browsers = [
            await stack.enter_async_context(churn.browser(f"{token} #{n}"))
            for n in range(POOL_SIZE)
        ]
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*(b.first_event() for b in browsers))
        except TimeoutError:
            started = sum(bool(b.response.events) for b in browsers)
            raise AssertionError(
                f"only {started} of {POOL_SIZE} concurrent streams started within {within}s: "
                f"{POOL_SIZE - started} pool slots leaked"
            ) from None
        # Released, they end normally: the pool keeps KEEPALIVE of their connections.
        response = await churn.control.post(f"/_control/release/{token}")
        response.raise_for_status()
        for browser in browsers:
            while not browser.response.finished:
                data = await browser.reader.read(65536)
                assert data, "a released stream broke off"
                browser.response.feed(data)
            assert browser.response.events[-1].event == "done", browser.response.events


async def serve_at_once(churn: Churn, count: int, concurrency: int, within: float) -> None:
    cookies = httpx.Cookies(churn.session.cookies)
    headers = {"X-CSRFToken": churn.session.csrf}
    limit = asyncio.Semaphore(concurrency)
    slow: list[str] = []
    async with async_http_client(churn.gateway.url, cookies=cookies, headers=headers) as client:

        async def one(n: int) -> None:
            route = STREAM if n % 2 else CHAT
            async with limit:
                started = time.monotonic()
                request = client.build_request("POST", route.path, **route.payload(f"after-{n}"))
                response = await client.send(request)
                elapsed = time.monotonic() - started
            assert response.status_code == 200, f"request {n}: {response.text[:300]}"
            if route.streams:
                events, rest = parse_stream(response.content)
                assert events[-1].event == "done", events
                assert rest == b""
            if elapsed > within:
                slow.append(f"#{n} {route.operation_id} {elapsed:.2f}s")

        await asyncio.gather(*(one(n) for n in range(count)))
    assert not slow, f"requests after the churn were not served at once: {slow}"


def gateway_connections(fake: Fake) -> int:
    """Open TCP connections at the dedicated fake, not counting the one asking."""
    with http_client(fake.url, headers={"Connection": "close"}) as control:
        counts = control.get("/_control/connections").json()
    assert counts.get("tracked", True), counts
    return int(counts["open"]) - 1


@pytest.mark.req("GW-LEAK-1")
@pytest.mark.asyncio
async def test_gw_leak_1_thousand_aborted_requests_leak_no_slot_and_no_connection(
    churn: Churn,
) -> None:
    mid, hang = await churn.behave(events=3, hold_after=1), await churn.behave(hang=True)
    # A waiter that got a connection before the gateway saw it leave must not be
    # answered in full (it would look like work done for nobody): it hangs.
    holder, queued = await churn.behave(events=3, hold_after=1), await churn.behave(hang=True)
    started = time.monotonic()
    try:
        async with asyncio.timeout(CHURN_DEADLINE):
            await abort_mid_stream(churn, mid, MID_STREAM)
            await abort_before_first_byte(churn, hang, BEFORE_FIRST_BYTE)
            await abort_in_queue(churn, holder, queued)
            # Nobody works for a client that left: every upstream request ended.
            expected = {
                mid: MID_STREAM,
                hang: BEFORE_FIRST_BYTE,
                holder: QUEUE_ROUNDS * POOL_SIZE,
                queued: None,  # only those the gateway let through before it noticed
            }
            for token, count in expected.items():
                await churn.wait_records(
                    token,
                    lambda r, count=count: (
                        (count is None or len(r) == count) and all(x["aborted"] for x in r)
                    ),
                    seconds=5.0,
                )
            churn_seconds = time.monotonic() - started

            # The next 100 requests are served at once, and every slot is still there.
            await serve_at_once(churn, count=100, concurrency=10, within=2.0)
            await assert_whole_pool_usable(churn, within=5.0)
    finally:
        await churn.control.aclose()

    # Idle connections above the keep-alive limit are closed (asynchronously: poll).
    keepalive = int(churn.gateway.knob("max_keepalive"))
    deadline = time.monotonic() + 3.0
    while (held := gateway_connections(churn.fake)) > keepalive:
        assert time.monotonic() < deadline, (
            f"the gateway holds {held} connections to the service (keep-alive limit "
            f"{keepalive}) after the churn"
        )
        await asyncio.sleep(0.1)  # poll interval, not synchronisation
    print(f"churn of 1,000 aborted requests took {churn_seconds:.1f}s")


# -- GW-FLOW-1 ------------------------------------------------------------------------------------
READ_RATE = 256 * KIB  # bytes per second
READ_FOR = 4.0  # seconds
FLOW_BUFFER = 32 * MIB
RSS_GROWTH = 16 * MIB


def process_rss(pid: int) -> int:
    """Resident memory of a process and all its children, in bytes."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


def upstream_port(record: dict[str, object]) -> int:
    """The gateway-side TCP port of a recorded upstream request."""
    return int(str(record["client"]).rsplit(":", 1)[1])


def gateway_upstream_ports(gateway: Running, fake: FakeControl) -> set[int]:
    """Local ports of the gateway's open TCP connections to the fake service.

    When a client leaves while the fake is blocked sending a bulk body, uvicorn turns
    the fake's remaining ``send()`` calls into no-ops that never yield, so its record
    says ``completed`` (all bytes "sent") instead of ``aborted``; the gateway's own
    sockets show what it did.
    """
    fake_port = int(fake.url.rsplit(":", 1)[1])
    top = psutil.Process(gateway.process.pid)
    return {  # the workers' sockets too, when the gateway is a process tree (gunicorn)
        conn.laddr.port
        for process in (top, *top.children(recursive=True))
        for conn in process.net_connections("tcp")
        if conn.raddr and conn.raddr.port == fake_port and conn.status == psutil.CONN_ESTABLISHED
    }


@pytest.mark.req("GW-FLOW-1")
def test_gw_flow_1_a_slow_reader_slows_the_service_down_and_memory_stays_flat(
    gateway: Running, alice_session: Session, fake_service: FakeControl
) -> None:
    # Warm up the bulk path first, so the baseline includes what it allocates once.
    warm = fake_service.behave(total_bytes=8 * MIB, chunk_size=64 * KIB)
    with RawRequest.to_gateway(alice_session, STREAM.path, message(warm)) as browser:
        assert browser.read_all().finished
        assert browser.response.body_bytes == 8 * MIB

    token = fake_service.behave(total_bytes=1024 * MIB, chunk_size=64 * KIB)
    baseline = peak = process_rss(gateway.process.pid)
    with RawRequest.to_gateway(alice_session, STREAM.path, message(token)) as browser:
        browser.read_until(lambda r: r.status is not None)
        assert browser.response.status == 200
        started = last_sample = time.monotonic()
        while (now := time.monotonic()) - started < READ_FOR:
            allowed = int(READ_RATE * (now - started)) - browser.response.received
            if allowed > 0:
                assert browser.recv(min(allowed, 64 * KIB)), "the stream ended early"
            else:
                # Reading slowly IS the behaviour under test: a client at 256 KiB/s.
                time.sleep(0.02)
            if now - last_sample >= 0.1:
                peak, last_sample = max(peak, process_rss(gateway.process.pid)), now
        peak = max(peak, process_rss(gateway.process.pid))
        read = browser.response.received
        (record,) = fake_service.requests(token)
        sent = record["bytes_sent"]
        assert read >= READ_RATE * READ_FOR / 2, f"the client could read only {read} bytes"
        assert sent <= read + FLOW_BUFFER, (
            f"the service sent {sent / MIB:.1f} MiB while the client read {read / MIB:.1f} MiB: "
            "the gateway reads ahead of its client"
        )
        assert peak - baseline <= RSS_GROWTH, (
            f"the gateway's memory grew by {(peak - baseline) / MIB:.1f} MiB during a slow stream"
        )
        upstream = upstream_port(record)
        assert upstream in gateway_upstream_ports(gateway, fake_service), "no upstream socket"
        browser.abort()
        # The reader left: the gateway closes its upstream connection (GW-CANCEL-1's
        # bound, with slack). Checked on the gateway's own sockets: the fake service
        # cannot tell this abort from a finished bulk transfer (see gateway_upstream_ports).
        deadline = time.monotonic() + 2.0
        while upstream in gateway_upstream_ports(gateway, fake_service):
            assert time.monotonic() < deadline, "the gateway kept its upstream connection open"
            time.sleep(0.02)  # poll interval, not synchronisation
    print(
        f"read {read / MIB:.2f} MiB, service sent {sent / MIB:.2f} MiB, "
        f"gateway RSS +{(peak - baseline) / MIB:.2f} MiB"
    )


# -- GW-OVERLOAD-1 --------------------------------------------------------------------------------
OVERLOAD_ROUTES = proxied_routes()


@pytest.mark.req("GW-OVERLOAD-1")
@pytest.mark.asyncio
async def test_gw_overload_1_every_request_beyond_a_full_pool_gets_503_at_once(
    tight_gateway: Running, alice: User, fake_service: FakeControl, secret: str
) -> None:
    # tight_gateway: max_connections 2, pool_timeout 1 s (or the gateway's fixed one),
    # read_timeout 10 s (shared, so the suite starts no extra gateway for this).
    pool_timeout = float(tight_gateway.knob("pool_timeout"))
    running = tight_gateway
    session = Session.of(running.url, alice)
    holder = fake_service.behave(events=3, hold_after=1)
    refused = new_token()
    cookies = httpx.Cookies(session.cookies)
    headers = {"X-CSRFToken": session.csrf}
    async with async_http_client(running.url, cookies=cookies, headers=headers) as client:
        held = []
        try:
            for n in range(2):
                request = client.build_request(
                    "POST", STREAM.path, json={"message": f"{holder} {n}"}
                )
                held.append(await client.send(request, stream=True))
                assert held[-1].status_code == 200
            fake_service.wait_for(lambda records: len(records) == 2, match=holder)

            async def one(n: int) -> tuple[httpx.Response, float]:
                route = OVERLOAD_ROUTES[n % len(OVERLOAD_ROUTES)]
                request = client.build_request(
                    "POST", route.path, **route.payload(f"{refused}-{n}")
                )
                started = time.monotonic()
                response = await client.send(request)
                return response, time.monotonic() - started

            answers = await asyncio.gather(*(one(n) for n in range(10)))
            for n, (response, elapsed) in enumerate(answers):
                problem(response, 503, secret)
                retry_after = response.headers.get("retry-after", "")
                assert retry_after.isdigit(), f"request {n}: Retry-After is {retry_after!r}"
                assert elapsed <= pool_timeout + 1.0, (
                    f"request {n} waited {elapsed:.2f}s for its 503 (pool timeout {pool_timeout}s)"
                )
            assert_not_contacted(fake_service, refused)

            fake_service.release(holder, count=2)
            for response in held:
                events, rest = parse_stream(await response.aread())
                assert [e.event for e in events] == ["token"] * 3 + ["done"], events
                assert rest == b""
        finally:
            for response in held:
                await response.aclose()
        again = await client.send(client.build_request("POST", CHAT.path, **CHAT.payload("again")))
        assert again.status_code == 200, again.text
