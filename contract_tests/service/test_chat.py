"""SVC-CHAT: one-shot chat, stateless, validated before the LLM is called."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from harness.client import assert_problem
from harness.fakes import FakeControl, new_token


def _conversation(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in record["json"]["messages"]]


@pytest.mark.req("SVC-CHAT-1")
@pytest.mark.parametrize(
    "reply",
    ["The answer is 42.", "Grüße aus Köln 🌍 — «ok»\nsecond line"],
    ids=["ascii", "unicode"],
)
def test_svc_chat_1_reply_is_the_llm_answer_with_usage(
    service_client: httpx.Client, fake_llm: FakeControl, reply: str
) -> None:
    token = fake_llm.behave(reply=reply)
    response = service_client.post("/chatbot/", json={"message": f"What is it? {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["reply"] == reply
    usage = body["usage"]
    assert isinstance(usage, dict), body
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(usage.get(key), int), usage
    assert len(fake_llm.requests(token)) == 1


@pytest.mark.req("SVC-CHAT-2")
def test_svc_chat_2_llm_sees_exactly_the_history_then_the_message(
    service_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(reply="fine")
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "I like 🍐 pears."},
        {"role": "assistant", "content": "Noted: pears."},
    ]
    message = f"What do I like? {token}"
    response = service_client.post("/chatbot/", json={"message": message, "history": history})
    assert response.status_code == 200, response.text
    (record,) = fake_llm.requests(token)
    seen = _conversation(record)
    expected = [*history, {"role": "user", "content": message}]
    assert seen[-len(expected) :] == expected, seen
    prefix = seen[: -len(expected)]
    assert all(m["role"] == "system" for m in prefix), f"extra turns before the history: {seen}"

    second = fake_llm.behave(reply="fine")
    response = service_client.post("/chatbot/", json={"message": f"Who am I? {second}"})
    assert response.status_code == 200, response.text
    (record,) = fake_llm.requests(second)
    seen = _conversation(record)
    assert seen[-1] == {"role": "user", "content": f"Who am I? {second}"}
    assert all(m["role"] == "system" for m in seen[:-1]), f"earlier turns leaked in: {seen}"
    sent = json.dumps(record["json"], ensure_ascii=False)
    for earlier in (*history, {"content": message}):
        assert earlier["content"] not in sent, "an earlier request reached the LLM"


def _invalid_bodies(token: str) -> dict[str, Any]:
    return {
        "missing-message": {"history": [{"role": "user", "content": token}]},
        "message-not-string": {"message": {"text": token}},
        "message-is-list": {"message": [token]},
        "history-not-list": {"message": token, "history": "earlier"},
        "unknown-role": {"message": token, "history": [{"role": "wizard", "content": "hi"}]},
        "history-without-content": {"message": token, "history": [{"role": "user"}]},
        "content-not-string": {"message": token, "history": [{"role": "user", "content": 7}]},
        "body-is-list": [{"message": token}],
    }


INVALID = list(_invalid_bodies("x"))


@pytest.mark.req("SVC-CHAT-3")
@pytest.mark.parametrize("case", INVALID)
@pytest.mark.parametrize("path", ["/chatbot/", "/chatbot/stream/"])
def test_svc_chat_3_invalid_body_is_422_before_the_llm(
    service_client: httpx.Client, fake_llm: FakeControl, path: str, case: str
) -> None:
    token = new_token()
    response = service_client.post(path, json=_invalid_bodies(token)[case])
    assert_problem(response, 422)
    assert fake_llm.requests(token) == [], "the LLM was called for an invalid request"


@pytest.mark.req("SVC-CHAT-3")
@pytest.mark.parametrize("path", ["/chatbot/", "/chatbot/stream/"])
def test_svc_chat_3_unparseable_json_is_400_or_422_before_the_llm(
    service_client: httpx.Client, fake_llm: FakeControl, path: str
) -> None:
    token = new_token()
    response = service_client.post(
        path,
        content=f'{{"message": "{token}", '.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text
    assert_problem(response, response.status_code)
    assert fake_llm.requests(token) == [], "the LLM was called for an invalid request"
