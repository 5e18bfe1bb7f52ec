"""gateway/upstream/aiohttp_compat.py against the installed aiohttp.

Each aiohttp internal the transport relies on is pinned by a test here, so a
new aiohttp that changes one fails a named test; verify() and the start-up
check (lamla.E004) are shown to refuse an aiohttp that lacks one.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from packaging.specifiers import SpecifierSet

from gateway.checks import check_aiohttp_internals, raise_for_errors
from gateway.upstream.aiohttp_compat import (
    SUPPORTED,
    IncompatibleAiohttp,
    KeepAliveLimitConnector,
    buffered,
    verify,
)

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def test_the_installed_aiohttp_is_in_the_range_pinned_in_pyproject() -> None:
    groups = tomllib.loads(PYPROJECT.read_text())["dependency-groups"]
    (pin,) = [dep for dep in groups["implementation"] if dep.startswith("aiohttp")]
    assert pin == f"aiohttp{SUPPORTED}"
    assert aiohttp.__version__ in SpecifierSet(SUPPORTED)


def test_verify_accepts_the_installed_aiohttp() -> None:
    verify()  # raises IncompatibleAiohttp otherwise
    assert check_aiohttp_internals() == []


# --- TCPConnector._release and _conns: the keep-alive cap -------------------


@dataclass
class Service:
    url: str = ""
    # Each answer waits for three requests to be in: three connections at once.
    together: asyncio.Barrier = field(default_factory=lambda: asyncio.Barrier(3))
    peers: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        await self.together.wait()
        return web.Response(text="ok")


@pytest_asyncio.fixture
async def service() -> AsyncIterator[Service]:
    state = Service()
    app = web.Application()
    app.router.add_get("/", state.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        yield state
    finally:
        await state.together.abort()
        await runner.cleanup()


async def _three_at_once(session: aiohttp.ClientSession, service: Service) -> None:
    """Three concurrent requests (three connections), each read to its end and released."""

    async def one() -> None:
        async with asyncio.timeout(5), session.get(service.url) as response:
            assert await response.text() == "ok"  # read to the end: release() may pool it

    await asyncio.gather(one(), one(), one())


@pytest.mark.asyncio
@pytest.mark.parametrize(("max_keepalive", "idle"), [(1, 1), (2, 2), (None, 3)])
async def test_release_with_the_keepalive_cap_closes_the_surplus_connections(
    service: Service, max_keepalive: int | None, idle: int
) -> None:
    connector = KeepAliveLimitConnector(max_keepalive=max_keepalive, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _three_at_once(session, service)
        assert len(set(service.peers)) == 3
        # aiohttp released all three through _release; the cap closed the rest.
        assert connector.idle_connections() == idle
        protocols = [proto for conns in connector._conns.values() for proto, _ in conns]
        assert len(protocols) == idle
        assert all(proto.is_connected() for proto in protocols)
        await _three_at_once(session, service)
    # The second round reused only the kept connections: the surplus ones were closed.
    assert len(set(service.peers)) == 3 + (3 - idle)


# --- StreamReader._buffer and _read_nowait: bytes that arrived before a failure --


class _Protocol:
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@pytest.mark.asyncio
async def test_buffered_returns_what_is_buffered_without_awaiting_after_a_failure() -> None:
    reader = aiohttp.StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    reader.feed_data(b"event: a\n\n")
    reader.feed_data(b"event: b\n\n")
    assert reader.read_nowait(3) == b"eve"  # a chunk partly read stays partly read
    reader.set_exception(aiohttp.ClientPayloadError("dropped"))
    # The reason for the compat function: aiohttp raises ahead of the buffered bytes.
    with pytest.raises(aiohttp.ClientPayloadError):
        await reader.read(64)
    with pytest.raises(aiohttp.ClientPayloadError):
        reader.read_nowait()
    assert buffered(reader) == b"nt: a\n\nevent: b\n\n"
    assert buffered(reader) == b""  # consumed once


@pytest.mark.asyncio
async def test_buffered_is_empty_on_an_empty_or_drained_stream() -> None:
    reader = aiohttp.StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    assert buffered(reader) == b""
    reader.feed_data(b"x")
    assert await reader.read(64) == b"x"
    assert buffered(reader) == b""
    assert buffered(aiohttp.EMPTY_PAYLOAD) == b""  # a body-less response's reader


# --- verify() and the start-up check refuse an aiohttp that lacks an internal --


def _replace_after_init(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> None:
    """Make instances of ``cls`` carry a list where aiohttp keeps ``name``."""
    original = cls.__init__

    def init(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        setattr(self, name, [])

    monkeypatch.setattr(cls, "__init__", init)


@pytest.mark.parametrize(
    ("break_it", "problem"),
    [
        (
            lambda mp: mp.delattr(aiohttp.BaseConnector, "_release"),
            "TCPConnector._release is missing",
        ),
        (
            lambda mp: mp.setattr(
                aiohttp.BaseConnector, "_release", lambda self, key, protocol, should_close: None
            ),
            "TCPConnector._release takes (self, key, protocol, should_close), "
            "not (self, key, protocol, *, should_close=False)",
        ),
        (
            lambda mp: mp.delattr(aiohttp.StreamReader, "_read_nowait"),
            "StreamReader._read_nowait is missing",
        ),
        (
            lambda mp: _replace_after_init(mp, aiohttp.BaseConnector, "_conns"),
            "BaseConnector._conns is not a dict",
        ),
        (
            lambda mp: _replace_after_init(mp, aiohttp.StreamReader, "_buffer"),
            "StreamReader._buffer is not a deque",
        ),
    ],
    ids=["release-missing", "release-reshaped", "read-nowait-missing", "conns", "buffer"],
)
def test_verify_names_the_version_the_range_and_what_is_off(
    monkeypatch: pytest.MonkeyPatch, break_it, problem: str
) -> None:
    break_it(monkeypatch)
    with pytest.raises(IncompatibleAiohttp) as raised:
        verify()
    message = str(raised.value)
    assert message.startswith(f"aiohttp {aiohttp.__version__} lacks ")
    assert f"(supported: aiohttp{SUPPORTED})" in message
    assert message.endswith(f": {problem}")
    assert "\n" not in message


def test_the_start_up_check_turns_it_into_one_line_naming_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(aiohttp.BaseConnector, "_release")
    (error,) = check_aiohttp_internals()
    assert error.id == "lamla.E004"
    assert error.is_serious()
    assert f"aiohttp {aiohttp.__version__}" in error.msg
    assert SUPPORTED in error.msg
    assert "set SERVICE_TRANSPORT=httpcore" in error.msg
    with pytest.raises(ImproperlyConfigured, match=r"\(lamla\.E004\)$") as raised:
        raise_for_errors()
    assert aiohttp.__version__ in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_check_is_off_when_aiohttp_carries_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(aiohttp.BaseConnector, "_release")
    with override_settings(SERVICE_TRANSPORT="httpcore"):
        assert check_aiohttp_internals() == []
        raise_for_errors()
    with override_settings(SERVICE_HTTP2=True):
        assert check_aiohttp_internals() == []


@pytest.mark.asyncio
async def test_the_asgi_application_refuses_to_start_on_an_incompatible_aiohttp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lamla.asgi import application

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "lifespan.startup"}

    async def send(message: dict) -> None:
        sent.append(message)

    monkeypatch.delattr(aiohttp.StreamReader, "_read_nowait")
    await application({"type": "lifespan"}, receive, send)
    (failed,) = sent
    assert failed["type"] == "lifespan.startup.failed"
    assert f"aiohttp {aiohttp.__version__}" in failed["message"]
    assert "StreamReader._read_nowait is missing" in failed["message"]
    assert failed["message"].endswith("(lamla.E004)")
    assert "\n" not in failed["message"]
