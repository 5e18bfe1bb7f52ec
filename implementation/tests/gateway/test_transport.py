"""gateway/upstream/transport.py over a real loopback server: httpx's pool semantics on aiohttp.

respx cannot show pooling, keep-alive, cancellation or broken connections, so
a small aiohttp.web server plays the service here.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from gateway.upstream.client import NoCookieJar
from gateway.upstream.transport import AiohttpTransport

pytestmark = pytest.mark.asyncio


@dataclass
class Service:
    url: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[web.Request] = field(default_factory=list)
    peers: set[int] = field(default_factory=set)
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # set at teardown
    bodies: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        port = request.transport.get_extra_info("peername")[1]  # type: ignore[union-attr]
        self.seen.append(request)
        self.peers.add(port)
        action = request.match_info["action"]
        body = await request.read()
        self.bodies.append((dict(request.headers), body))
        if action == "hold":
            await self.release.wait()
        if action == "cookie":
            response = web.json_response({"ok": True})
            response.set_cookie("svc", "alice-cookie")
            return response
        if action == "partial":
            partial = web.StreamResponse(headers={"Content-Length": "100"})
            await partial.prepare(request)
            await partial.write(b"x" * 10)
            request.transport.close()  # type: ignore[union-attr]
            return partial
        if action == "drop":
            events = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await events.prepare(request)
            await events.write(b"event: token\ndata: 1\n\nevent: token\ndata: 2\n\n")
            request.transport.close()  # type: ignore[union-attr]
            return events
        if action == "vanish":
            request.transport.close()  # type: ignore[union-attr]
            return web.Response()
        if action == "silent":
            await self.gone.wait()  # the client's read timeout is what ends this
        if action == "stream":
            stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await stream.prepare(request)
            await stream.write(b"event: token\ndata: {}\n\n")
            await self.release.wait()
            await stream.write(b"event: done\ndata: {}\n\n")
            return stream
        return web.json_response({"ok": True})


@pytest_asyncio.fixture
async def service() -> AsyncIterator[Service]:
    state = Service()
    app = web.Application()
    app.router.add_route("*", "/{action}", state.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        state.release.set()
        state.gone.set()
        await runner.cleanup()


def client(
    service: Service, *, max_connections: int = 10, max_keepalive: int = 10, pool: float = 5.0
) -> tuple[httpx.AsyncClient, AiohttpTransport]:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive,
        keepalive_expiry=4.0,
    )
    transport = AiohttpTransport(limits=limits)
    timeout = httpx.Timeout(connect=1.0, read=1.0, write=1.0, pool=pool)
    return (
        httpx.AsyncClient(
            base_url=service.url, transport=transport, timeout=timeout, cookies=NoCookieJar()
        ),
        transport,
    )


async def wait_until(predicate, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)  # poll interval, not synchronisation


async def test_sequential_requests_reuse_one_connection(service: Service) -> None:
    http, _ = client(service)
    async with http:
        for _ in range(10):
            response = await http.post("/ok", content=b"{}")
            assert response.status_code == 200
            assert response.http_version == "HTTP/1.1"
    assert len(service.peers) == 1


async def test_stats_count_requests_and_the_connections_opened_for_them(service: Service) -> None:
    http, transport = client(service, max_connections=2)
    async with http:
        for _ in range(5):
            assert (await http.post("/ok", content=b"{}")).status_code == 200
        held = [asyncio.ensure_future(http.post("/hold", content=b"{}")) for _ in range(3)]
        await wait_until(lambda: transport.stats().waiting == 1)
        stats = transport.stats()
        assert (stats.in_use, stats.idle, stats.requests) == (2, 0, 7)  # not the waiting one
        assert stats.connections_opened == 2  # the first, and one more for the second hold
        service.release.set()
        await asyncio.gather(*held)
        stats = transport.stats()
        assert (stats.in_use, stats.waiting, stats.idle) == (0, 0, 2)
        assert stats.connections_opened == len(service.peers) == 2


async def test_a_full_pool_gives_pool_timeout_after_the_pool_timeout(service: Service) -> None:
    http, _ = client(service, max_connections=1, pool=0.3)
    async with http:
        held = asyncio.ensure_future(http.post("/hold", content=b"{}"))
        await wait_until(lambda: len(service.seen) == 1)
        started = time.monotonic()
        with pytest.raises(httpx.PoolTimeout):
            await http.post("/ok", content=b"{}")
        assert 0.25 <= time.monotonic() - started < 1.0
        service.release.set()
        assert (await held).status_code == 200
        assert (await http.post("/ok", content=b"{}")).status_code == 200


async def test_waiters_cancelled_in_the_queue_take_no_slot_and_never_reach_the_service(
    service: Service,
) -> None:
    http, transport = client(service, max_connections=2, pool=10.0)
    async with http:
        held = [asyncio.ensure_future(http.post("/hold", content=b"{}")) for _ in range(2)]
        await wait_until(lambda: len(service.seen) == 2)
        waiters = [asyncio.ensure_future(http.post("/ok", content=b"{}")) for _ in range(10)]
        await wait_until(lambda: transport.stats().waiting == 10)
        service.release.set()  # slots come free while the waiters are being cancelled
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*held, *waiters, return_exceptions=True)
        stats = transport.stats()
        assert (stats.in_use, stats.waiting) == (0, 0), "a cancelled waiter kept a pool slot"
        started = time.monotonic()
        fresh = await asyncio.gather(*(http.post("/ok", content=b"{}") for _ in range(2)))
        assert [r.status_code for r in fresh] == [200, 200]
        assert time.monotonic() - started < 1.0


async def test_idle_connections_beyond_the_keepalive_limit_are_closed(service: Service) -> None:
    http, transport = client(service, max_connections=10, max_keepalive=2)
    async with http:
        calls = [asyncio.ensure_future(http.post("/hold", content=b"{}")) for _ in range(6)]
        await wait_until(lambda: len(service.seen) == 6)
        service.release.set()
        await asyncio.gather(*calls)
        assert transport.connector is not None
        assert transport.connector.idle_connections() == 2


async def test_an_unfinished_response_closes_its_connection(service: Service) -> None:
    http, transport = client(service)
    async with http:
        async with http.stream("POST", "/stream", content=b"{}") as response:
            async for chunk in response.aiter_bytes():
                assert chunk.startswith(b"event: token")
                break
        assert transport.connector is not None
        assert transport.connector.idle_connections() == 0
        service.release.set()
        assert (await http.post("/ok", content=b"{}")).status_code == 200
    assert len(service.peers) == 2, "the half-read connection was reused"


async def test_cookies_set_by_the_service_are_not_sent_back(service: Service) -> None:
    http, _ = client(service)
    async with http:
        await http.post("/cookie", content=b"{}")
        await http.post("/ok", content=b"{}")
    headers, _ = service.bodies[-1]
    assert "Cookie" not in headers


async def test_a_streamed_body_keeps_its_length(service: Service) -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"a" * 70_000
        yield b"b" * 10

    http, _ = client(service)
    async with http:
        response = await http.post("/ok", content=parts(), headers={"content-length": "70010"})
        assert response.status_code == 200
    headers, body = service.bodies[-1]
    assert headers.get("Content-Length") == "70010"
    assert "Transfer-Encoding" not in headers
    assert body == b"a" * 70_000 + b"b" * 10


async def test_bytes_that_arrived_before_a_drop_are_read_before_the_error(
    service: Service,
) -> None:
    http, _ = client(service)
    async with http, http.stream("POST", "/drop", content=b"{}") as response:
        content = response.stream._stream._response.content  # type: ignore[attr-defined]
        await wait_until(lambda: content.exception() is not None)  # dropped, unread
        received: list[bytes] = []

        async def read_all() -> None:
            async for chunk in response.aiter_bytes():
                received.append(chunk)

        with pytest.raises(httpx.RemoteProtocolError):
            await read_all()
        assert b"".join(received) == b"event: token\ndata: 1\n\nevent: token\ndata: 2\n\n"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("action", "error"),
    [
        ("partial", httpx.RemoteProtocolError),
        ("vanish", httpx.RemoteProtocolError),
        ("silent", httpx.ReadTimeout),
    ],
)
async def test_broken_answers_become_the_httpx_errors_httpcore_raises(
    service: Service, action: str, error: type[Exception]
) -> None:
    http, transport = client(service)

    async def fetch() -> None:
        response = await http.post(f"/{action}", content=b"{}")
        await response.aread()

    async with http:
        with pytest.raises(error):
            await fetch()
        assert transport.stats().in_use == 0, "a failed request kept its pool slot"


async def test_connection_refused_is_a_connect_error(service: Service) -> None:
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(transport=AiohttpTransport(limits=limits)) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{_closed_port()}/ok", content=b"{}")
        with pytest.raises(httpx.ConnectError):  # the slot came back
            await http.post(f"http://127.0.0.1:{_closed_port()}/ok", content=b"{}")
