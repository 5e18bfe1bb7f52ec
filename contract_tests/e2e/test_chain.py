"""Browser -> gateway -> service -> LLM, every part real except the LLM."""

from __future__ import annotations

import httpx
import pytest

from harness.client import assert_problem, parse_stream
from harness.fakes import FakeControl
from harness.spec import ProxiedRoute, proxied_routes, route

CHAT = route("chat")
STREAM = route("chat_stream")
FILE = route("chat_file")
QUIZ = route("quiz_generate")


def stream_chat(client: httpx.Client, message: str) -> tuple[list, bytes]:
    response = client.post(STREAM.path, json={"message": message})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_stream(response.content)


@pytest.mark.req("E2E-1")
def test_e2e_1_streamed_tokens_arrive_in_order_then_done(
    e2e_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(tokens=6)
    events, rest = stream_chat(e2e_client, f"count for me {token}")
    assert [e.event for e in events] == ["token"] * 6 + ["done"]
    assert "".join(e.json()["text"] for e in events[:-1]) == "".join(f"tok{i} " for i in range(6))
    assert "usage" in events[-1].json()
    assert rest == b""


@pytest.mark.req("E2E-2")
def test_e2e_2_user_id_reaches_the_llm_and_the_secret_does_not(
    e2e_client: httpx.Client, fake_llm: FakeControl, secret: str
) -> None:
    user_id = str(e2e_client.get("/api/auth/me/").json()["id"])
    token = fake_llm.behave(reply="hello")
    assert e2e_client.post(CHAT.path, json={"message": token}).status_code == 200
    (record,) = fake_llm.requests(token)
    assert record["user"] == user_id
    assert secret not in repr(record["headers"])
    assert secret not in record["body"]


@pytest.mark.req("E2E-2")
@pytest.mark.parametrize(
    "proxied",
    [pytest.param(r, id=r.operation_id) for r in proxied_routes() if r != CHAT],
)
def test_e2e_2_every_other_route_sends_the_user_id_to_the_llm_and_not_the_secret(
    e2e_client: httpx.Client, fake_llm: FakeControl, secret: str, proxied: ProxiedRoute
) -> None:
    """The stream, the file upload and the quiz as the chat above: each LLM call has the user."""
    user_id = str(e2e_client.get("/api/auth/me/").json()["id"])
    token = fake_llm.behave()  # the LLM's default answer fits every route (a quiz when asked)
    response = proxied.call(e2e_client, token)
    assert response.status_code == 200, response.text
    records = fake_llm.requests(token)
    assert records, f"{proxied}: the LLM never saw the request's text"
    for record in records:
        assert record["user"] == user_id, f"{proxied}: the LLM was told user {record['user']!r}"
        assert secret not in repr(record["headers"])
        assert secret not in record["body"]


@pytest.mark.req("E2E-3")
def test_e2e_3_chat_file_and_quiz_work_through_the_chain(
    e2e_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(reply="a plain answer")
    chat = e2e_client.post(CHAT.path, json={"message": f"hi {token}", "history": []})
    assert chat.status_code == 200, chat.text
    assert chat.json()["reply"] == "a plain answer"

    token = fake_llm.behave(reply="about your file")
    text = f"The ledger says 42 {token}".encode()
    upload = e2e_client.post(
        FILE.path,
        data={"message": "what does it say?"},
        files={"file": ("notes.txt", text, "text/plain")},
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["reply"] == "about your file"
    (record,) = fake_llm.requests(token)
    assert "The ledger says 42" in record["body"]

    quiz = e2e_client.post(
        QUIZ.path, json={"topic": "HTTP", "num_questions": 4, "difficulty": "easy"}
    )
    assert quiz.status_code == 200, quiz.text
    body = quiz.json()
    assert body["topic"] == "HTTP"
    assert len(body["questions"]) == 4
    assert all(len(q["options"]) == 4 for q in body["questions"])


@pytest.mark.req("E2E-3")
def test_e2e_3_service_validation_errors_reach_the_browser_as_problems(
    e2e_client: httpx.Client, fake_llm: FakeControl
) -> None:
    response = e2e_client.post(QUIZ.path, json={"topic": "x", "num_questions": 99})
    assert_problem(response, 422)
    assert fake_llm.requests() == []


@pytest.mark.req("E2E-4")
@pytest.mark.parametrize("fail_mode", ["drop", "error_event"])
def test_e2e_4_llm_failure_mid_stream_ends_with_one_error_event(
    e2e_client: httpx.Client, fake_llm: FakeControl, fail_mode: str
) -> None:
    token = fake_llm.behave(tokens=10, fail_after=3, fail_mode=fail_mode)
    events, rest = stream_chat(e2e_client, token)
    names = [e.event for e in events]
    assert names == ["token"] * 3 + ["error"], names
    assert events[-1].json()["status"] >= 500
    assert rest == b"", f"stream did not end on an event boundary: {rest!r}"
