"""The SSE relay (GW-PROXY-8): whole events only, one error event on a boundary."""

from __future__ import annotations

import asyncio
import gc
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.relay import open_relay
from gateway.proxy.sse import (
    _NEWLINE_WALK,
    EventBoundaryBuffer,
    _last_boundary_end,
    has_terminal_event,
)


def event(text: str) -> bytes:
    return b"event: token\ndata: " + json.dumps({"text": text}).encode() + b"\n\n"


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks, start = [], 0
    for point in [*points, len(data)]:
        chunks.append(data[start:point])
        start = point
    return [chunk for chunk in chunks if chunk]


ERROR = b'{"type":"about:blank","title":"Bad Gateway","status":502,"detail":"x"}'
texts = st.lists(st.text(max_size=40), min_size=1, max_size=8)


@given(texts, st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_property_clean_stream_is_relayed_whole_in_event_sized_pieces(
    words: list[str], cuts: list[int]
) -> None:
    data = b"".join(event(word) for word in words)
    buffer = EventBoundaryBuffer()
    out = []
    for chunk in split(data, cuts):
        ready = buffer.feed(chunk)
        assert ready == b"" or ready.endswith(b"\n\n"), ready
        out.append(ready)
    out.append(buffer.flush())
    assert b"".join(out) == data


@given(
    texts,
    st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    st.integers(min_value=0, max_value=2000),
)
def test_property_failure_mid_stream_ends_with_one_error_event_on_a_boundary(
    words: list[str], cuts: list[int], fail_at: int
) -> None:
    data = b"".join(event(word) for word in words)
    received = data[: min(fail_at, len(data))]  # the service died after this byte
    buffer = EventBoundaryBuffer()
    relayed = b"".join(buffer.feed(chunk) for chunk in split(received, cuts))
    relayed += buffer.error_event(ERROR)

    before, marker, after = relayed.partition(b"event: error\ndata: ")
    assert marker, relayed
    assert after == ERROR + b"\n\n", "the error event is not the single last event"
    assert before == b"" or before.endswith(b"\n\n"), "the error event does not start on a boundary"
    assert data.startswith(before), "relayed bytes are not a prefix of what the service sent"
    complete_events = received[: received.rfind(b"\n\n") + 2] if b"\n\n" in received else b""
    assert before == complete_events, "a complete event was lost or a partial one relayed"


def test_boundary_split_across_chunks_is_found() -> None:
    buffer = EventBoundaryBuffer()
    assert buffer.feed(b"event: token\ndata: {}\n") == b""
    assert buffer.feed(b"\nevent: to") == b"event: token\ndata: {}\n\n"
    assert buffer.error_event(ERROR) == b"event: error\ndata: " + ERROR + b"\n\n"


def test_crlf_boundaries_count() -> None:
    buffer = EventBoundaryBuffer()
    assert buffer.feed(b"data: a\r\n\r\ndata: b") == b"data: a\r\n\r\n"


def test_an_oversized_event_is_forwarded_raw_and_the_error_still_starts_on_a_boundary() -> None:
    buffer = EventBoundaryBuffer(max_pending=16)
    assert buffer.feed(b"data: " + b"x" * 20) == b"data: " + b"x" * 20
    assert not buffer.at_boundary
    assert buffer.error_event(ERROR).startswith(b"\n\nevent: error\n")


# -- the relay generator over an httpx response --------------------------------------------------
class FakeStream(httpx.AsyncByteStream):
    """An upstream body: given chunks, then optionally an exception; records closing."""

    def __init__(self, chunks: list[bytes], fail: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail = fail
        self.closed = False
        self.closed_event = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(0)
            yield chunk
        if self.fail is not None:
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True
        self.closed_event.set()


def upstream(stream: FakeStream) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1:8001/chatbot/stream/")
    return httpx.Response(200, stream=stream, request=request)


async def collect(relay: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in relay])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (httpx.RemoteProtocolError("peer closed connection"), 502),
        (httpx.ReadError("reset"), 502),
        (httpx.ReadTimeout("slow"), 504),
    ],
)
async def test_relay_ends_a_broken_stream_with_one_error_event(
    failure: Exception, status: int
) -> None:
    whole = event("a") + event("b")
    stream = FakeStream([whole[:7], whole[7:] + b'event: token\ndata: {"te'], fail=failure)
    relayed = await collect(await open_relay(upstream(stream)))
    assert relayed.startswith(whole + b"event: error\ndata: ")
    assert relayed.count(b"event: error") == 1
    problem = json.loads(relayed[len(whole) :].split(b"data: ", 1)[1])
    assert problem["status"] == status
    assert set(problem) >= {"type", "title", "status", "detail"}
    assert stream.closed


@pytest.mark.asyncio
async def test_relay_passes_a_clean_stream_through_and_closes_upstream() -> None:
    whole = event("a") + b"event: done\ndata: {}\n\n"
    stream = FakeStream([whole[:3], whole[3:20], whole[20:]])
    assert await collect(await open_relay(upstream(stream))) == whole
    assert stream.closed


@pytest.mark.asyncio
async def test_relay_ends_a_stream_that_stops_without_done_with_an_error_event() -> None:
    whole = event("a") + event("b")
    stream = FakeStream([whole, b"event: token\ndata: {}"])  # clean end, no done, a partial
    relayed = await collect(await open_relay(upstream(stream)))
    assert relayed.startswith(whole + b"event: error\ndata: ")
    assert relayed.endswith(b"\n\n")
    assert relayed.count(b"event: error") == 1
    assert stream.closed


def test_done_and_error_events_finish_a_stream() -> None:
    for last in (b"event: done\ndata: {}\n\n", b"event:error\r\ndata: {}\r\n\r\n"):
        buffer = EventBoundaryBuffer()
        buffer.feed(event("a"))
        assert not buffer.finished
        buffer.feed(last)
        assert buffer.finished
    buffer = EventBoundaryBuffer()
    buffer.feed(b'data: {"text":"event: done"}\n\n')
    assert not buffer.finished


@pytest.mark.asyncio
async def test_relay_closed_early_closes_upstream() -> None:
    stream = FakeStream([event("a"), event("b"), event("c")])
    relay = await open_relay(upstream(stream))
    assert await anext(relay) == event("a")
    await relay.aclose()  # what a client disconnect amounts to
    assert stream.closed


@pytest.mark.asyncio
async def test_relay_dropped_before_iteration_still_closes_upstream() -> None:
    """Django may drop the response before iterating it (disconnect during middleware)."""
    stream = FakeStream([event("a")])
    relay = await open_relay(upstream(stream))
    del relay
    gc.collect()
    # The loop's async-generator finalizer schedules aclose(); wait for it, bounded.
    await asyncio.wait_for(stream.closed_event.wait(), timeout=2.0)
    assert stream.closed, "an unstarted relay left its upstream response (and connection) open"


_TERMINAL_LINES = {b"event: done", b"event:done", b"event: error", b"event:error"}


class _TerminalReference:
    """The definition: some line (CRLF, CR or LF ends) is a terminal event line."""

    @staticmethod
    def search(data: bytes) -> bool:
        return any(line in _TERMINAL_LINES for line in re.split(rb"\r\n|\r|\n", data))


_TERMINAL_REGEX = _TerminalReference
_pieces = st.sampled_from(
    [
        b"event:",
        b"event: ",
        b"done",
        b"error",
        b"token",
        b"\n",
        b"\r",
        b"\r\n",
        b" ",
        b"x",
        b"data: {}",
    ]
)


@given(st.lists(_pieces, max_size=14))
def test_property_terminal_events_are_found_as_the_regex_finds_them(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert has_terminal_event(data) is bool(_TERMINAL_REGEX.search(data)), data


# Past _NEWLINE_WALK newlines both searches switch to a regex: cover that side too.
_many_lines = st.lists(_pieces, min_size=_NEWLINE_WALK, max_size=6 * _NEWLINE_WALK)


@given(_many_lines)
def test_property_terminal_events_past_the_newline_walk(parts: list[bytes]) -> None:
    data = b"\n" * _NEWLINE_WALK + b"".join(parts)
    assert has_terminal_event(data) is bool(_TERMINAL_REGEX.search(data)), data


def test_a_done_event_with_bare_cr_line_ends_finishes_the_stream() -> None:
    buffer = EventBoundaryBuffer()
    buffer.feed(b'event: token\rdata: {"text":"a"}\r\revent: done\rdata: {"text": ""}\r\r')
    assert buffer.finished


@given(st.one_of(st.lists(_pieces, max_size=14), _many_lines), st.integers(0, 40))
def test_property_last_boundary_is_the_last_of_any_kind(parts: list[bytes], start: int) -> None:
    data = b"".join(parts)
    start = min(start, len(data))
    ends = [
        index + len(boundary)
        for boundary in (b"\n\n", b"\r\n\r\n", b"\r\r")
        if (index := data.rfind(boundary, start)) >= 0
    ]
    assert _last_boundary_end(data, start) == max(ends, default=0), (data, start)


def test_a_bulk_event_is_scanned_at_memchr_speed() -> None:
    """64 KiB of payload with one boundary: found, and no terminal event in it."""
    data = b":" + b"x" * (64 * 1024) + b"\n\n" + b":" + b"x" * 1000
    assert _last_boundary_end(data, 0) == 64 * 1024 + 3
    assert not has_terminal_event(data)


@given(texts, st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_property_whole_event_chunks_pass_through_unchanged(
    words: list[str], cuts: list[int]
) -> None:
    data = b"".join(event(word) for word in words) + b"event: done\ndata: {}\n\n"
    buffer = EventBoundaryBuffer()
    out = [buffer.feed(chunk) for chunk in split(data, cuts)]
    assert b"".join(out) + buffer.flush() == data
    assert buffer.finished
