"""The request log (gateway/observability/): the ASGI layer and the two formats."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from gateway.observability.exchange import CURRENT, Exchange, note_stream_end, note_user
from gateway.observability.logformat import JsonFormatter, TextFormatter
from gateway.observability.observe import UNMATCHED, Observe, RequestLog, exchange_fields


class _Recorder:
    """A sink that keeps each exchange it is told of, as it is when closed."""

    def __init__(self) -> None:
        self.closed_exchanges: list[Exchange] = []
        self.events: list[str] = []

    def opened(self, exchange: Exchange) -> None:
        self.events.append("opened")

    def streaming(self, exchange: Exchange) -> None:
        self.events.append("streaming")

    def closed(self, exchange: Exchange) -> None:
        self.events.append("closed")
        self.closed_exchanges.append(exchange)


def _scope(path: str = "/api/chat/") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": []}


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _run(app: Any, path: str = "/api/chat/") -> tuple[list[Exchange], list[dict[str, Any]]]:
    recorder = _Recorder()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    observe = Observe(app, routes=["/api/chat/"], sinks=[recorder])
    await observe(_scope(path), _receive, send)
    return recorder.closed_exchanges, sent


@pytest.mark.asyncio
async def test_an_answer_is_measured_and_logged_once_with_what_the_layers_noted() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        note_user(7)
        headers = [(b"x-request-id", b"abc")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        note_stream_end("done")
        note_stream_end("client_left")  # the first note wins
        await send({"type": "http.response.body", "body": b"678"})

    (exchange,), sent = await _run(app)
    assert len(sent) == 3
    fields = exchange_fields(exchange)
    assert fields["request_id"] == "abc"
    assert (fields["user_id"], fields["status"], fields["bytes"]) == (7, 200, 8)
    assert (fields["route"], fields["stream_end"], fields["client_left"]) == (
        "/api/chat/", "done", False,
    )  # fmt: skip
    assert 0 <= fields["ttfb_ms"] <= fields["duration_ms"]
    assert CURRENT.get() is None, "the exchange outlived its request"


@pytest.mark.asyncio
async def test_an_answer_that_never_completed_is_a_client_that_left() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})

    (exchange,), _ = await _run(app)
    assert exchange.client_left


@pytest.mark.asyncio
async def test_an_app_that_raises_is_still_logged() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    recorder = _Recorder()
    observe = Observe(app, routes=[], sinks=[recorder])
    with pytest.raises(RuntimeError):
        await observe(_scope(), _receive, _noop_send)
    assert recorder.events == ["opened", "closed"]
    assert recorder.closed_exchanges[0].status is None


async def _noop_send(message: dict[str, Any]) -> None:
    return None


def test_routes_are_templates_never_raw_paths() -> None:
    observe = Observe(_noop_send, routes=["/api/chat/"], sinks=[])  # type: ignore[arg-type]
    assert observe.route_of("/api/chat/") == "/api/chat/"
    assert observe.route_of("/api/auth/login/") == "/api/auth/login/"
    assert observe.route_of("/api/secret-token-123/") == UNMATCHED


def _record(fields: dict[str, object] | None) -> logging.LogRecord:
    record = logging.LogRecord(
        "gateway.requests", logging.INFO, __file__, 1, "POST %s", ("x",), None
    )
    if fields is not None:
        record.fields = fields
    return record


def test_json_lines_carry_the_fields_as_members() -> None:
    line = JsonFormatter().format(_record({"status": 200, "user_id": None}))
    data = json.loads(line)
    assert data["message"] == "POST x"
    assert (data["status"], data["user_id"], data["logger"]) == (200, None, "gateway.requests")
    assert "\n" not in line


def test_text_lines_carry_the_fields_as_name_value_pairs() -> None:
    line = TextFormatter().format(_record({"status": 200, "user_id": None, "client_left": False}))
    assert line.endswith("POST x status=200 client_left=no")
    assert TextFormatter().format(_record(None)).endswith("gateway.requests: POST x")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.written = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.written.set()


@pytest.mark.asyncio
async def test_the_request_log_writes_in_batches_and_flush_writes_what_is_pending() -> None:
    lines = _Lines()
    logger = logging.getLogger("gateway.requests")
    logger.addHandler(lines)
    try:
        request_log = RequestLog(delay=0.05)
        for n in range(3):
            exchange = Exchange("POST", "/api/chat/", started=float(n))
            exchange.status, exchange.finished = 200, float(n) + 0.5
            request_log.closed(exchange)
        assert lines.messages == []  # not one at a time
        await asyncio.wait_for(lines.written.wait(), 2.0)
        assert lines.messages == ["POST /api/chat/ 200"] * 3  # all three, together
        request_log.closed(Exchange("GET", "/api/auth/me/", started=0.0))
        request_log.flush()  # at shutdown: nothing waits for the timer
        assert lines.messages[-1] == "GET /api/auth/me/ None"
        assert len(lines.messages) == 4
        request_log.flush()
        assert len(lines.messages) == 4, "a flushed line is written once"
    finally:
        logger.removeHandler(lines)
