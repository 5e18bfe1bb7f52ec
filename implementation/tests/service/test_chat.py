"""One-shot chat, validation and LLM error mapping (SVC-CHAT-*, SVC-LLM-*, PROB-*)."""

from __future__ import annotations

import httpx
import pytest
import respx
from fastapi import FastAPI

from .helpers import API_KEY, LLM_URL, SECRET, assert_problem, completion, sent_payload

pytestmark = pytest.mark.asyncio


async def test_chat_returns_the_reply_and_usage(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("Hello there", prompt=5))
    response = await client.post("/chatbot/", json={"message": "Hi"})
    assert response.status_code == 200
    assert response.json() == {
        "reply": "Hello there",
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-internal-secret" not in request.headers
    assert SECRET not in request.content.decode()
    payload = sent_payload(route)
    assert payload["model"] == "test-model"
    assert payload["stream"] is False
    assert payload["messages"] == [{"role": "user", "content": "Hi"}]
    assert "user" not in payload


async def test_history_is_sent_in_order_and_nothing_else(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("ok"))
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
    ]
    await client.post("/chatbot/", json={"message": "three", "history": history})
    await client.post("/chatbot/", json={"message": "fresh"})
    assert sent_payload(route, 0)["messages"] == [*history, {"role": "user", "content": "three"}]
    assert sent_payload(route, 1)["messages"] == [{"role": "user", "content": "fresh"}]


@pytest.mark.parametrize(
    ("header", "expected"),
    [("user-42", "user-42"), ("a@b.c:d_e-f", "a@b.c:d_e-f"), ("bad id", None), ("x" * 129, None)],
)
async def test_user_id_reaches_the_llm_when_well_formed(
    client: httpx.AsyncClient, llm: respx.MockRouter, header: str, expected: str | None
) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("ok"))
    response = await client.post("/chatbot/", json={"message": "Hi"}, headers={"X-User-Id": header})
    assert response.status_code == 200
    assert sent_payload(route).get("user") == expected


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": ""},
        {"message": 5},
        {"message": "x" * 32_001},
        {"message": "hi", "history": [{"role": "robot", "content": "x"}]},
        {"message": "hi", "history": [{"role": "user"}]},
        {"message": "hi", "history": "nope"},
        {"message": "hi", "history": [{"role": "user", "content": "x"}] * 101},
        {"message": "hi", "extra": 1},
        ["message"],
    ],
)
async def test_invalid_bodies_get_422_before_the_llm(
    client: httpx.AsyncClient, llm: respx.MockRouter, body: object
) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    for path in ("/chatbot/", "/chatbot/stream/"):
        problem = assert_problem(await client.post(path, json=body), 422)
        assert isinstance(problem["errors"], list)
        assert problem["errors"]
        assert {"loc", "msg", "type"} <= problem["errors"][0].keys()
    assert route.call_count == 0


async def test_invalid_json_gets_400(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    response = await client.post(
        "/chatbot/", content=b'{"message": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 400)
    assert route.call_count == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type_gets_415(
    client: httpx.AsyncClient, llm: respx.MockRouter, content_type: str
) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    response = await client.post(
        "/chatbot/", content=b'{"message": "hi"}', headers={"Content-Type": content_type}
    )
    assert_problem(response, 415)
    assert route.call_count == 0


async def test_json_with_charset_is_accepted(
    client: httpx.AsyncClient, llm: respx.MockRouter
) -> None:
    llm.post(LLM_URL).respond(200, json=completion("ok"))
    response = await client.post(
        "/chatbot/",
        content=b'{"message": "hi"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("llm_response", "status"),
    [
        (httpx.Response(500, json={"error": {"message": "boom"}}), 502),
        (httpx.Response(503, text="overloaded"), 502),
        (httpx.Response(401, json={"error": {"message": f"Incorrect API key {API_KEY}"}}), 502),
        (httpx.Response(200, text="not json"), 502),
        (httpx.Response(200, json={"choices": []}), 502),
        (httpx.Response(200, json={"choices": [{"message": {"content": None}}]}), 502),
        (httpx.Response(429, headers={"Retry-After": "7"}), 503),
    ],
)
async def test_llm_failures_map_to_statuses(
    client: httpx.AsyncClient, llm: respx.MockRouter, llm_response: httpx.Response, status: int
) -> None:
    llm.post(LLM_URL).mock(return_value=llm_response)
    problem = assert_problem(await client.post("/chatbot/", json={"message": "Hi"}), status)
    assert "boom" not in problem["detail"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (httpx.ConnectError("refused"), 502),
        (httpx.RemoteProtocolError("Server disconnected"), 502),
        (httpx.ReadError("reset"), 502),
        (httpx.ConnectTimeout("slow"), 504),
        (httpx.ReadTimeout("slow"), 504),
        (httpx.PoolTimeout("busy"), 503),
    ],
)
async def test_transport_errors_map_to_statuses(
    client: httpx.AsyncClient, llm: respx.MockRouter, error: Exception, status: int
) -> None:
    llm.post(LLM_URL).mock(side_effect=error)
    response = await client.post("/chatbot/", json={"message": "Hi"})
    assert_problem(response, status)
    if status == 503:
        assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        ("7", "7"),
        ("0", "0"),
        (None, "1"),
        ("soon", "1"),
        ("-3", "1"),
        ("99999", "1"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "1"),
    ],
)
async def test_rate_limit_gives_503_with_retry_after(
    client: httpx.AsyncClient, llm: respx.MockRouter, upstream: str | None, expected: str
) -> None:
    headers = {"Retry-After": upstream} if upstream is not None else {}
    llm.post(LLM_URL).respond(429, headers=headers, json={"error": {"message": "slow down"}})
    response = await client.post("/chatbot/", json={"message": "Hi"})
    assert_problem(response, 503)
    assert response.headers["retry-after"] == expected


async def test_unknown_path_and_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404)
    assert_problem(await client.post("/chatbot"), 404)  # no redirect to the slash
    response = await client.get("/chatbot/")
    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"


async def test_unexpected_errors_are_a_generic_500(app: FastAPI) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"leak {SECRET}")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
        response = await http.get("/boom", headers={"X-Internal-Secret": SECRET})
    problem = assert_problem(response, 500)
    assert "leak" not in problem["detail"]


async def test_json_body_limit_gives_413(client: httpx.AsyncClient, llm: respx.MockRouter) -> None:
    route = llm.post(LLM_URL).respond(200, json=completion("never"))
    body = b'{"message": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    response = await client.post(
        "/chatbot/", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413)
    assert route.call_count == 0
