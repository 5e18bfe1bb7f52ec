"""Streamed chat (SVC-STREAM-*): framing, headers, failures before and during the stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from fastapi_service.core.llm import LLMTimeout, StreamItem, Usage
from fastapi_service.core.sse import PING, EventStreamResponse, Relay

from .helpers import LLM_URL, assert_problem, parse_events, sent_payload, sse_lines

pytestmark = pytest.mark.asyncio

SSE_HEADERS = {"content-type": "text/event-stream"}


async def chunks(lines: list[bytes], *, then: Exception | None = None) -> AsyncIterator[bytes]:
    for line in lines:
        yield line
    if then is not None:
        raise then


async def test_tokens_then_done(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    route = llm.post(LLM_URL).respond(
        200, headers=SSE_HEADERS, stream=chunks(sse_lines(["Hel", "lo", " you"]))
    )
    response = await client.post(
        "/chatbot/stream/", json={"message": "Hi"}, headers={"X-User-Id": "u1"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert parse_events(response.content) == [
        ("token", {"text": "Hel"}),
        ("token", {"text": "lo"}),
        ("token", {"text": " you"}),
        ("done", {"usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}),
    ]
    assert b'data: {"text":"Hel"}\n\n' in response.content  # compact JSON, one data line
    payload = sent_payload(route)
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}
    assert payload["user"] == "u1"
    assert payload["messages"] == [{"role": "user", "content": "Hi"}]


async def test_done_without_usage_reports_zeros(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    llm.post(LLM_URL).respond(
        200, headers=SSE_HEADERS, stream=chunks(sse_lines(["a"], usage=False))
    )
    events = parse_events((await client.post("/chatbot/stream/", json={"message": "Hi"})).content)
    assert events[-1] == (
        "done",
        {"usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}},
    )


@pytest.mark.parametrize(
    ("mock", "status"),
    [
        ({"return_value": httpx.Response(500)}, 502),
        ({"return_value": httpx.Response(429, headers={"Retry-After": "3"})}, 503),
        ({"side_effect": httpx.ConnectError("refused")}, 502),
        ({"side_effect": httpx.ConnectTimeout("slow")}, 504),
        ({"side_effect": httpx.ReadTimeout("slow")}, 504),
    ],
)
async def test_failure_before_the_stream_is_a_plain_problem(
    client: httpx.AsyncClient, llm: respx.MockRouter, mock: dict[str, object], status: int
) -> None:
    llm.post(LLM_URL).mock(**mock)
    response = await client.post("/chatbot/stream/", json={"message": "Hi"})
    assert_problem(response, status)
    if status == 503:
        assert response.headers["retry-after"] == "3"


@pytest.mark.parametrize(
    ("lines", "then", "status"),
    [
        ([], httpx.RemoteProtocolError("peer closed connection"), 502),
        ([], httpx.ReadTimeout("slow"), 504),
        ([b"data: {not json\n\n"], None, 502),
        ([b'data: {"error": {"message": "overloaded"}}\n\n'], None, 502),
        ([b": keep-alive\n\n", b"data: [DONE]\n\n"], None, None),
    ],
)
async def test_failure_before_the_first_token_is_a_plain_problem(
    client: httpx.AsyncClient,
    llm: respx.MockRouter,
    lines: list[bytes],
    then: Exception | None,
    status: int | None,
) -> None:
    """The LLM said 200 but nothing usable yet: the caller still gets a real status."""
    llm.post(LLM_URL).respond(200, headers=SSE_HEADERS, stream=chunks(lines, then=then))
    response = await client.post("/chatbot/stream/", json={"message": "Hi"})
    if status is None:  # an empty but complete answer is a stream with just `done`
        assert [name for name, _ in parse_events(response.content)] == ["done"]
    else:
        assert_problem(response, status)


@pytest.mark.parametrize(
    ("tail", "then"),
    [
        ([], httpx.RemoteProtocolError("peer closed connection")),
        ([], httpx.ReadTimeout("slow")),
        ([b"data: {not json\n\n"], None),
        ([b'data: {"error": {"message": "overloaded"}}\n\n'], None),
        ([], None),  # cut without finish_reason or [DONE]
    ],
)
async def test_failure_mid_stream_ends_with_one_error_event(
    client: httpx.AsyncClient,
    llm: respx.MockRouter,
    tail: list[bytes],
    then: Exception | None,
) -> None:
    head = sse_lines(["one", "two"], usage=False, done=False)[:3]  # role, one, two
    llm.post(LLM_URL).respond(200, headers=SSE_HEADERS, stream=chunks(head + tail, then=then))
    response = await client.post("/chatbot/stream/", json={"message": "Hi"})
    assert response.status_code == 200
    events = parse_events(response.content)
    assert events[:2] == [("token", {"text": "one"}), ("token", {"text": "two"})]
    assert [name for name, _ in events[2:]] == ["error"]
    problem = events[2][1]
    assert problem["status"] == (504 if isinstance(then, httpx.ReadTimeout) else 502)
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert response.content.endswith(b"\n\n")


async def test_stream_without_done_but_finished_is_accepted(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    llm.post(LLM_URL).respond(200, headers=SSE_HEADERS, stream=chunks(sse_lines(["x"], done=False)))
    events = parse_events((await client.post("/chatbot/stream/", json={"message": "Hi"})).content)
    assert [name for name, _ in events] == ["token", "done"]


# The relay itself: pings, promptness, cleanup on cancel.


class Source:
    """A scripted LLM stream that records whether it was closed."""

    def __init__(self, items: list[StreamItem | float], *, hang: bool = False) -> None:
        self.items = items
        self.hang = hang
        self.closed = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self) -> AsyncIterator[StreamItem]:
        try:
            for item in self.items:
                if isinstance(item, float):
                    await asyncio.sleep(item)
                else:
                    yield item
            if self.hang:
                await self.release.wait()
        finally:
            self.closed.set()


async def test_relay_pings_during_silence() -> None:
    source = Source(["a", 0.2, "b", Usage(1, 2, 3)])
    relay = Relay(source.run(), ping_interval=0.05)
    await relay.start()
    out = [chunk async for chunk in relay.events()]
    assert out[0] == b'event: token\ndata: {"text":"a"}\n\n'
    assert PING in out
    assert out[-2:] == [
        b'event: token\ndata: {"text":"b"}\n\n',
        b"event: done\n"
        b'data: {"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n',
    ]


async def test_relay_yields_a_token_while_the_llm_holds_back_the_rest() -> None:
    source = Source(["first"], hang=True)
    relay = Relay(source.run(), ping_interval=10)
    await relay.start()
    events = relay.events()
    started = time.monotonic()
    first = await asyncio.wait_for(anext(events), timeout=2)
    assert first == b'event: token\ndata: {"text":"first"}\n\n'
    assert time.monotonic() - started < 1
    await events.aclose()  # the caller goes away
    await asyncio.wait_for(source.closed.wait(), timeout=1)


async def test_cancelled_relay_closes_the_llm_stream() -> None:
    """What Starlette does when the client disconnects: cancel the task iterating the body."""
    source = Source(["first"], hang=True)
    relay = Relay(source.run(), ping_interval=10)
    await relay.start()
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in relay.events():
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), timeout=2)
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    await asyncio.wait_for(source.closed.wait(), timeout=1)


async def test_relay_start_raises_the_llm_error() -> None:
    async def failing() -> AsyncIterator[StreamItem]:
        raise LLMTimeout("slow")
        yield "never"  # pragma: no cover - makes this an async generator

    relay = Relay(failing(), ping_interval=10)
    with pytest.raises(LLMTimeout):
        await relay.start()


async def test_response_closes_the_relay_even_if_never_iterated() -> None:
    closed: list[bool] = []

    async def on_close() -> None:
        closed.append(True)

    async def body() -> AsyncIterator[bytes]:
        yield b""

    response = EventStreamResponse(body(), on_close=on_close)

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        raise OSError("gone")

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(Exception):  # noqa: B017, PT011 - Starlette's ClientDisconnect
        await response(scope, receive, send)
    assert closed == [True]
