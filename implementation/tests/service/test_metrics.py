"""The service's metrics (OPS-METRICS-1, -3, -5): labels, outcomes, and what each layer counts.

The metrics live in prometheus-client's default registry, shared by every test of the
session, so each test reads how far a sample moved during it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import respx
from prometheus_client import REGISTRY
from starlette.types import Message, Receive, Scope, Send

from deploy.metrics import Listener
from fastapi_service.core import metrics
from fastapi_service.core.config import ConfigError, metrics_listener
from fastapi_service.core.llm import LLMClient, LLMUnavailable, Usage, build_http_client
from fastapi_service.core.metrics import LLMCall, outcome_of
from fastapi_service.core.request_metrics import RequestMetricsMiddleware, RouteLabels
from fastapi_service.core.sse import EventStreamResponse
from fastapi_service.main import create_app

from .helpers import LLM_URL, completion, make_settings, sse_lines

SSE_HEADERS = {"content-type": "text/event-stream"}
DOCUMENTED = RouteLabels(["/health", "/chatbot/", "/chatbot/stream/", "/items/{item_id}"])


def value(name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (as a scrape sums)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def mover(name: str, **labels: str) -> Callable[[], float]:
    """How far ``name{labels}`` has moved since this call."""
    start = value(name, **labels)
    return lambda: value(name, **labels) - start


async def chunks(lines: list[bytes]) -> AsyncIterator[bytes]:
    for line in lines:
        yield line


# -- labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/chatbot/", "/chatbot/"),
        ("/chatbot/stream/", "/chatbot/stream/"),
        ("/items/42", "/items/{item_id}"),
        ("/chatbot", "unmatched"),
        ("/chatbot/stream", "unmatched"),
        ("/chatbot/x", "unmatched"),
        ("/items/42/more", "unmatched"),
        ("/items/", "unmatched"),
        ("/metrics", "unmatched"),
        ("/", "unmatched"),
    ],
)
def test_route_label_is_a_template_or_unmatched(path: str, label: str) -> None:
    assert DOCUMENTED.route(path) == label


@pytest.mark.parametrize(
    ("method", "label"),
    [("GET", "GET"), ("POST", "POST"), ("PUT", "PUT"), ("get", "other"), ("BREW", "other")],
)
def test_method_label_is_a_listed_method_or_other(method: str, label: str) -> None:
    assert DOCUMENTED.method(method) == label


def test_the_apps_route_labels_are_its_documents_templates() -> None:
    app = create_app(make_settings())
    labels = RouteLabels.from_openapi(app.openapi())
    assert set(labels.templates) == set(app.openapi()["paths"])
    # Served by FastAPI, but not in the document: not a label (OPS-METRICS-3).
    assert labels.route("/openapi.json") == "unmatched"
    assert labels.route("/docs") == "unmatched"


# -- outcomes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, "ok"),
        (asyncio.CancelledError(), "cancelled"),
        (GeneratorExit(), "cancelled"),
        (LLMUnavailable("down"), "error"),
        (ValueError("bug"), "error"),
    ],
    ids=["none", "cancelled", "generator-closed", "llm-error", "other-error"],
)
def test_outcome_of(exc: BaseException | None, outcome: str) -> None:
    assert outcome_of(exc) == outcome


def _finish_then_leave() -> None:
    with LLMCall("stream") as call:
        call.first_token()
        call.first_token()
        call.finish(Usage(prompt_tokens=7, completion_tokens=3, total_tokens=10))
        call.finish(Usage(prompt_tokens=7, completion_tokens=3, total_tokens=10))
        raise GeneratorExit


def test_a_call_is_counted_once_with_its_usage() -> None:
    ok = mover("service_llm_requests_total", operation="stream", outcome="ok")
    cancelled = mover("service_llm_requests_total", operation="stream", outcome="cancelled")
    timed = mover("service_llm_duration_seconds_count", operation="stream")
    ttft = mover("service_llm_ttft_seconds_count")
    prompt = mover("service_llm_tokens_total", kind="prompt")
    completion_tokens = mover("service_llm_tokens_total", kind="completion")
    # The reader leaves after the LLM finished: the call stays ok.
    with pytest.raises(GeneratorExit):
        _finish_then_leave()
    assert (ok(), cancelled(), timed(), ttft()) == (1, 0, 1, 1)
    assert (prompt(), completion_tokens()) == (7, 3)


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (asyncio.CancelledError(), "cancelled"),
        (GeneratorExit(), "cancelled"),
        (LLMUnavailable("down"), "error"),
    ],
    ids=["cancelled", "generator-closed", "llm-error"],
)
def test_a_call_that_did_not_finish_is_counted_by_what_ended_it(
    exc: BaseException, outcome: str
) -> None:
    counted = mover("service_llm_requests_total", operation="chat", outcome=outcome)
    total = mover("service_llm_requests_total", operation="chat")
    timed = mover("service_llm_duration_seconds_count", operation="chat")
    with pytest.raises(type(exc)), LLMCall("chat"):
        raise exc
    assert (counted(), total(), timed()) == (1, 1, 0)


# -- the request layer ------------------------------------------------------------------------


def _document() -> dict[str, Any]:
    return {"paths": {"/chatbot/": {"post": {}}}}


async def _post(app: Any, path: str) -> list[Message]:
    """POST ``path`` to a bare ASGI app; what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send)
    return sent


@pytest.mark.asyncio
async def test_an_exception_before_any_answer_is_a_500_and_is_raised() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    counted = mover("service_requests_total", route="/chatbot/", method="POST", status="500")
    layer = RequestMetricsMiddleware(failing, openapi=_document)
    with pytest.raises(RuntimeError):
        await _post(layer, "/chatbot/")
    assert counted() == 1


@pytest.mark.asyncio
async def test_no_answer_and_no_exception_is_a_client_that_left() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    counted = mover("service_requests_total", route="/chatbot/", method="POST", status="499")
    timed = mover("service_request_duration_seconds_count", route="/chatbot/")
    layer = RequestMetricsMiddleware(silent, openapi=_document)
    assert await _post(layer, "/chatbot/") == []
    assert (counted(), timed()) == (1, 1)


@pytest.mark.asyncio
async def test_refusals_of_the_gate_and_unknown_paths_are_counted(
    client: httpx.AsyncClient,
) -> None:
    refused = mover("service_requests_total", route="/chatbot/", method="POST", status="401")
    unknown = mover("service_requests_total", route="unmatched", method="GET", status="404")
    metrics_path = mover("service_requests_total", route="unmatched", method="GET", status="401")
    response = await client.post(
        "/chatbot/", json={"message": "hi"}, headers={"X-Internal-Secret": ""}
    )
    assert response.status_code == 401
    assert (await client.get("/no/such/path")).status_code == 404
    assert (await client.get("/metrics", headers={"X-Internal-Secret": ""})).status_code == 401
    assert (refused(), unknown(), metrics_path()) == (1, 1, 1)


@pytest.mark.asyncio
async def test_metrics_are_not_on_the_service_port(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 404
    assert "service_requests_total" not in response.text


# -- the LLM calls, through the routes --------------------------------------------------------


@pytest.mark.asyncio
async def test_a_chat_counts_its_call_and_the_reported_tokens(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    llm.post(LLM_URL).respond(200, json=completion("Hello", prompt=11, completion_tokens=5))
    ok = mover("service_llm_requests_total", operation="chat", outcome="ok")
    requests = mover("service_requests_total", route="/chatbot/", method="POST", status="200")
    prompt = mover("service_llm_tokens_total", kind="prompt")
    completion_tokens = mover("service_llm_tokens_total", kind="completion")
    assert (await client.post("/chatbot/", json={"message": "hi"})).status_code == 200
    assert (ok(), requests(), prompt(), completion_tokens()) == (1, 1, 11, 5)


@pytest.mark.asyncio
async def test_a_file_chat_is_a_chat(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    llm.post(LLM_URL).respond(200, json=completion("It says hi"))
    ok = mover("service_llm_requests_total", operation="chat", outcome="ok")
    requests = mover("service_requests_total", route="/chatbot/file/", status="200")
    response = await client.post(
        "/chatbot/file/",
        data={"message": "What is in it?"},
        files={"file": ("a.txt", b"hi", "text/plain")},
    )
    assert response.status_code == 200, response.text
    assert (ok(), requests()) == (1, 1)


@pytest.mark.asyncio
async def test_an_llm_failure_is_an_error(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    llm.post(LLM_URL).respond(500, json={"error": "down"})
    error = mover("service_llm_requests_total", operation="chat", outcome="error")
    total = mover("service_llm_requests_total", operation="chat")
    answered = mover("service_requests_total", route="/chatbot/", status="502")
    assert (await client.post("/chatbot/", json={"message": "hi"})).status_code == 502
    assert (error(), total(), answered()) == (1, 1, 1)


@pytest.mark.asyncio
async def test_a_quiz_asked_twice_is_two_calls(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    quiz = {
        "topic": "t",
        "questions": [
            {
                "question": "q?",
                "options": ["a", "b", "c", "d"],
                "answer_index": 0,
                "explanation": "e",
            }
        ],
    }
    llm.post(LLM_URL).mock(
        side_effect=[
            httpx.Response(200, json=completion("not json")),
            httpx.Response(200, json=completion(json.dumps(quiz))),
        ]
    )
    calls = mover("service_llm_requests_total", operation="quiz", outcome="ok")
    response = await client.post("/quiz/", json={"topic": "t", "num_questions": 1})
    assert response.status_code == 200, response.text
    assert calls() == 2


@pytest.mark.asyncio
async def test_a_stream_counts_once_with_its_first_token_and_usage(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    llm.post(LLM_URL).respond(200, headers=SSE_HEADERS, stream=chunks(sse_lines(["a", "b"])))
    ok = mover("service_llm_requests_total", operation="stream", outcome="ok")
    total = mover("service_llm_requests_total", operation="stream")
    ttft = mover("service_llm_ttft_seconds_count")
    completion_tokens = mover("service_llm_tokens_total", kind="completion")
    response = await client.post("/chatbot/stream/", json={"message": "hi"})
    assert response.status_code == 200
    assert (ok(), total(), ttft(), completion_tokens()) == (1, 1, 1, 2)
    assert value("service_streams_open") == 0


@pytest.mark.asyncio
async def test_a_stream_closed_after_its_first_token_is_cancelled(llm: respx.MockRouter) -> None:
    llm.post(LLM_URL).respond(200, headers=SSE_HEADERS, stream=chunks(sse_lines(["a", "b"])))
    cancelled = mover("service_llm_requests_total", operation="stream", outcome="cancelled")
    total = mover("service_llm_requests_total", operation="stream")
    ttft = mover("service_llm_ttft_seconds_count")
    tokens = mover("service_llm_tokens_total")
    settings = make_settings()
    async with build_http_client(settings) as http:
        items = LLMClient(http, settings).stream([{"role": "user", "content": "hi"}])
        assert await anext(items) == "a"
        await items.aclose()
    assert (cancelled(), total(), ttft(), tokens()) == (1, 1, 1, 0)


@pytest.mark.asyncio
async def test_a_chat_whose_task_is_cancelled_is_cancelled(llm: respx.MockRouter) -> None:
    arrived = asyncio.Event()

    async def never(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    llm.post(LLM_URL).mock(side_effect=never)
    cancelled = mover("service_llm_requests_total", operation="chat", outcome="cancelled")
    settings = make_settings()
    async with build_http_client(settings) as http:
        client = LLMClient(http, settings)
        task = asyncio.ensure_future(client.complete([], operation="chat"))
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert cancelled() == 1


@pytest.mark.asyncio
async def test_an_event_stream_is_open_while_it_is_sent() -> None:
    seen: list[float] = []
    start = value("service_streams_open")

    async def events() -> AsyncIterator[bytes]:
        seen.append(value("service_streams_open"))
        yield b"event: done\ndata: {}\n\n"

    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "POST", "headers": []}
    await EventStreamResponse(events())(scope, receive, send)
    assert seen == [start + 1]
    assert value("service_streams_open") == start


# -- the listener -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.asyncio
async def test_the_lifespan_serves_the_metrics_on_their_own_port_and_closes_it() -> None:
    port = _free_port()
    app = create_app(make_settings(), metrics=Listener("127.0.0.1", port))
    url = f"http://127.0.0.1:{port}/metrics"
    async with app.router.lifespan_context(app), httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(url)
        assert response.status_code == 200
        assert "# TYPE service_requests_total counter" in response.text
        assert "service_llm_tokens_total" in response.text
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"METRICS_PORT": ""}, None),
        ({"METRICS_PORT": "9100"}, Listener("127.0.0.1", 9100)),
        ({"METRICS_PORT": "9100", "METRICS_HOST": "0.0.0.0"}, Listener("0.0.0.0", 9100)),
    ],
)
def test_metrics_listener(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: Listener | None
) -> None:
    for name in ("METRICS_PORT", "METRICS_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, setting in environ.items():
        monkeypatch.setenv(name, setting)
    assert metrics_listener() == expected


@pytest.mark.parametrize("port", ["abc", "0", "70000", "-1"])
def test_a_bad_metrics_port_refuses_to_start(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("METRICS_PORT", port)
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        metrics_listener()


def test_every_llm_series_is_scraped_before_the_first_call() -> None:
    for operation in metrics.OPERATIONS:
        for outcome in metrics.OUTCOMES:
            labels = {"operation": operation, "outcome": outcome}
            assert REGISTRY.get_sample_value("service_llm_requests_total", labels) is not None
    for kind in ("prompt", "completion"):
        assert REGISTRY.get_sample_value("service_llm_tokens_total", {"kind": kind}) is not None
