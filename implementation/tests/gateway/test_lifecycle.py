"""Draining and readiness (gateway/lifecycle/): the pieces, without a server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.lifecycle import draining
from gateway.lifecycle.draining import Drain
from gateway.lifecycle.readiness import Readiness
from gateway.proxy.relay import open_relay

pytestmark = pytest.mark.asyncio

EVENT = b'event: token\ndata: {"text": "a"}\n\n'


class QuietStream(httpx.AsyncByteStream):
    """One whole event and half of the next, then nothing until closed (a thinking LLM)."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield EVENT + b"event: tok"
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def drain(monkeypatch: pytest.MonkeyPatch) -> Drain:
    fresh = Drain()
    monkeypatch.setattr("gateway.proxy.relay.DRAIN", fresh)
    return fresh


async def _relay_all(stream: QuietStream) -> list[bytes]:
    upstream = httpx.Response(200, stream=stream)
    relay = await open_relay(upstream, path="/chatbot/stream/")
    return [chunk async for chunk in relay]


async def test_a_quiet_stream_ends_at_the_drain_deadline_with_one_503_error(drain: Drain) -> None:
    stream = QuietStream()
    relaying = asyncio.ensure_future(_relay_all(stream))
    await asyncio.sleep(0.01)
    assert not relaying.done()
    drain.begin(0.05)
    chunks = await asyncio.wait_for(relaying, 2.0)
    assert chunks[0] == EVENT  # whole events only: the half event is dropped
    error = chunks[-1]
    assert error.startswith(b"event: error\ndata: ")
    assert json.loads(error.split(b"data: ", 1)[1])["status"] == 503
    assert stream.closed, "the upstream response was left open"
    assert not drain.streams, "the relay did not unregister"


async def test_a_stream_that_starts_after_the_deadline_ends_at_once(drain: Drain) -> None:
    drain.begin(0.0)
    chunks = await asyncio.wait_for(_relay_all(QuietStream()), 2.0)
    assert b"event: error" in chunks[-1]


async def test_streams_before_a_drain_are_not_bounded(drain: Drain) -> None:
    relaying = asyncio.ensure_future(_relay_all(QuietStream()))
    await asyncio.sleep(0.1)
    assert not relaying.done()
    relaying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await relaying


async def test_the_signal_hook_starts_the_drain_and_calls_the_servers_handler() -> None:
    drain, received = Drain(), []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        draining.install(3.0, drain)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            if drain.draining:
                break
            await asyncio.sleep(0.01)
        assert received == [signal.SIGTERM], "the server's own handler did not run"
        assert drain.draining
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


async def test_readiness_reports_each_check_and_fails_on_a_failing_one() -> None:
    async def ok() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("no")

    readiness = Readiness({"database": ok, "service": down, "redis": down},
                          degraded_only=frozenset({"redis"}), drain=Drain())  # fmt: skip
    report = await readiness.report()
    assert not report.ready
    assert report.checks == {
        "draining": "ok", "database": "ok", "service": "fail", "redis": "degraded",
    }  # fmt: skip
    assert report.failing == ["service"]


async def test_readiness_runs_checks_once_per_ttl_and_fails_at_once_when_draining() -> None:
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)

    drain = Drain()
    readiness = Readiness({"database": counted}, ttl=60.0, drain=drain)
    reports = await asyncio.gather(*(readiness.report() for _ in range(20)))
    await readiness.report()
    assert calls == 1, "concurrent and cached probes ran the check again"
    assert all(r.ready for r in reports)
    drain.begin(5.0)
    report = await readiness.report()
    assert not report.ready
    assert report.checks == {"draining": "fail"}


async def test_a_check_that_hangs_fails_within_the_timeout() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    readiness = Readiness({"service": hangs}, timeout=0.05, drain=Drain())
    report = await asyncio.wait_for(readiness.report(), 1.0)
    assert report.checks["service"] == "fail"
