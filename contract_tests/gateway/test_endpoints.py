"""GW-CHAT, GW-STREAM, GW-FILE, GW-QUIZ: the proxied endpoints relay to the right service route."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from contract_tests.gateway.conftest import (
    MIB,
    assert_not_contacted,
    one_request,
    only_value,
    problem,
    route_params,
)
from harness.client import Event, EventReader, assert_no_leak, parse_stream
from harness.fakes import FakeControl
from harness.spec import ProxiedRoute, route
from harness.system import Running

CHAT = route("chat")
STREAM = route("chat_stream")
FILE = route("chat_file")
QUIZ = route("quiz_generate")

#: A deadline for the first relayed event, below the gateway's 3 s read timeout, so a
#: gateway that buffers until its read timeout fires cannot pass by accident.
FIRST_EVENT_DEADLINE = 2.5


def upstream_json(fake: FakeControl, token: str, path: str) -> dict:
    record = one_request(fake, token)
    assert record["method"] == "POST"
    assert record["path"] == path
    content_type = only_value(record, "content-type")
    assert content_type.split(";")[0].strip() == "application/json", content_type
    body = json.loads(record["body"])
    assert isinstance(body, dict), body
    return body


# -- GW-ROUTE-1 ---------------------------------------------------------------------------------
@pytest.mark.req("GW-ROUTE-1")
@pytest.mark.parametrize("each", route_params())
def test_gw_route_1_every_proxied_operation_reaches_its_upstream_path_with_its_body(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, each: ProxiedRoute
) -> None:
    token = fake_service.behave(times=1)  # the fake's own answer for the route
    request = each.build(alice_client, token)
    response = alice_client.send(request)
    assert response.status_code == 200, response.text
    assert_no_leak(response, secret)
    if each.streams:
        events, rest = parse_stream(response.content)
        assert [event.event for event in events][-1:] == ["done"], events
        assert rest == b""
    else:
        assert isinstance(response.json(), dict), response.text
    record = one_request(fake_service, token)
    assert record["method"] == "POST"
    assert record["path"] == each.upstream, f"{each} went to {record['path']}"
    if each.uploads:  # re-framed by the gateway: every field and file byte still there
        for value in each.example.fields(token).values():
            assert value in record["body"], f"field {value!r} lost"
        for _, content, _ in each.example.files(token).values():
            assert content.decode() in record["body"], "file bytes lost"
    else:
        assert record["body"] == request.content.decode(), "the JSON body was changed"


# -- GW-CHAT-1 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-CHAT-1")
def test_gw_chat_1_chat_is_proxied_to_chatbot_and_the_reply_returned(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    answer = {
        "reply": "a distinctive reply: 7f3c ✓ ünïcödé",
        "usage": {"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33},
    }
    token = fake_service.behave(reply=answer)
    history = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "earlier question 漢字"},
        {"role": "assistant", "content": "earlier answer"},
    ]
    message = f'héllo {token} "quoted" \\ back'
    response = alice_client.post(CHAT.path, json={"message": message, "history": history})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == answer
    assert_no_leak(response, secret)

    sent = upstream_json(fake_service, token, CHAT.upstream)
    assert sent["message"] == message
    assert sent["history"] == history


@pytest.mark.req("GW-CHAT-1")
def test_gw_chat_1_chat_without_history_is_proxied(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    token = fake_service.behave(times=1)  # the fake's default answer: "echo: <message>"
    response = alice_client.post(CHAT.path, json={"message": f"just this {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == f"echo: just this {token}"
    sent = upstream_json(fake_service, token, CHAT.upstream)
    assert sent["message"] == f"just this {token}"
    assert sent.get("history") in (None, [])


# -- GW-QUIZ-1 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-QUIZ-1")
def test_gw_quiz_1_quiz_is_proxied_to_quiz_and_the_answer_returned(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    quiz = {
        "topic": "a distinctive topic 9d1e",
        "questions": [
            {
                "question": "Which status means Bad Gateway?",
                "options": ["500", "502", "503", "504"],
                "answer_index": 1,
                "explanation": "502 is Bad Gateway.",
            }
        ],
    }
    token = fake_service.behave(reply=quiz)
    request = {"topic": f"HTTP status codes {token}", "num_questions": 1, "difficulty": "hard"}
    response = alice_client.post(QUIZ.path, json=request)
    assert response.status_code == 200, response.text
    assert response.json() == quiz
    assert_no_leak(response, secret)

    sent = upstream_json(fake_service, token, QUIZ.upstream)
    assert sent["topic"] == request["topic"]
    assert sent["num_questions"] == 1
    assert sent["difficulty"] == "hard"


# -- GW-FILE-1 ----------------------------------------------------------------------------------
def upload(
    client: httpx.Client,
    content: bytes,
    message: str,
    name: str = "notes.pdf",
    content_type: str = "application/pdf",
):
    """A multipart upload; a PDF by default, so any byte may follow ``%PDF-`` (SEC-6)."""
    return client.post(
        FILE.path,
        data={"message": message},
        files={"file": (name, content, content_type)},
        timeout=30.0,
    )


def expected_reply(name: str, content: bytes, message: str) -> str:
    """What the fake service answers for an upload (fakes/service/routes.py)."""
    digest = hashlib.sha256(content).hexdigest()
    return f"file {name} {len(content)} bytes sha256 {digest}: {message}"


@pytest.mark.req("GW-FILE-1")
def test_gw_file_1_upload_reaches_the_service_byte_for_byte(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    token = fake_service.behave(times=1)  # default answer: name, size and sha256 of the file
    # Every byte value, CRLFs and a boundary look-alike: re-encoding must not touch them.
    content = (
        b"%PDF-1.4\n" + bytes(range(256)) * 64 + b"\r\n--boundary\r\n\r\n\x00\xff" + "ünï".encode()
    )
    message = f"what is in it? {token}"
    response = upload(alice_client, content, message)
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == expected_reply("notes.pdf", content, message)
    assert_no_leak(response, secret)

    record = one_request(fake_service, token)
    assert record["method"] == "POST"
    assert record["path"] == FILE.upstream
    content_type = only_value(record, "content-type")
    assert content_type.startswith("multipart/form-data"), content_type
    assert re.search(r"(?i)content-type:\s*application/pdf", record["body"]), (
        "the file part lost its content type"
    )


@pytest.mark.req("GW-FILE-1")
def test_gw_file_1_a_file_of_exactly_10_mib_is_proxied_intact(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    token = fake_service.behave(times=1)
    content = b"%PDF-" + (bytes(range(256)) * (10 * MIB // 256))[5:]
    assert len(content) == 10 * MIB
    message = f"big one {token}"
    response = upload(alice_client, content, message, name="big.pdf")
    assert response.status_code == 200, response.text[:500]
    assert response.json()["reply"] == expected_reply("big.pdf", content, message)


# -- GW-FILE-2 ----------------------------------------------------------------------------------
@pytest.mark.req("GW-FILE-2")
def test_gw_file_2_upload_over_10_mib_gets_413_without_contacting_the_service(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    token = fake_service.behave(reply={"reply": "must not be seen", "usage": {}})
    content = b"%PDF-" + b"x" * (10 * MIB + 1 - 5)  # a valid type: only its size is wrong
    problem(upload(alice_client, content, f"too big {token}"), 413, secret)
    assert_not_contacted(fake_service)
    # The gateway is still fine afterwards.
    after = alice_client.post(CHAT.path, json={"message": "still there?"})
    assert after.status_code == 200, after.text


# -- GW-STREAM-1 --------------------------------------------------------------------------------
@pytest.mark.req("GW-STREAM-1")
def test_gw_stream_1_first_event_arrives_while_the_service_holds_the_rest(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    token = fake_service.behave(events=5, hold_after=1)
    message = f"stream {token}"
    reader = EventReader()
    events: list[Event] = []
    timeout = httpx.Timeout(10.0, read=FIRST_EVENT_DEADLINE)
    with alice_client.stream(
        "POST", STREAM.path, json={"message": message}, timeout=timeout
    ) as response:
        assert response.status_code == 200, response.read()
        chunks = response.iter_raw()
        try:
            for chunk in chunks:
                events += reader.feed(chunk)
                if events:
                    break
        except httpx.ReadTimeout:
            pytest.fail(
                f"no event reached the client within {FIRST_EVENT_DEADLINE}s while the "
                "service held the rest of the stream: the gateway buffers"
            )
        assert [e.event for e in events] == ["token"], events
        (record,) = fake_service.requests(token)
        assert not record["completed"], "the service was not holding the stream any more"

        fake_service.release(token, count=1)
        for chunk in chunks:
            events += reader.feed(chunk)
    assert reader.pending.strip() == b"", reader.pending
    assert [e.event for e in events] == ["token"] * 5 + ["done"]
    texts = "".join(e.json()["text"] for e in events[:-1])
    assert texts == f"echo {message} 2 3 4"
    assert "usage" in events[-1].json()


# -- GW-STREAM-2 --------------------------------------------------------------------------------
@pytest.mark.req("GW-STREAM-2")
def test_gw_stream_2_relayed_stream_has_event_stream_headers(
    alice_client: httpx.Client, fake_service: FakeControl, gateway: Running
) -> None:
    token = fake_service.behave(events=3)
    response = alice_client.post(STREAM.path, json={"message": f"headers {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0].strip() == "text/event-stream"
    cache_control = [
        v.strip().lower() for v in response.headers.get("cache-control", "").split(",")
    ]
    assert "no-cache" in cache_control, response.headers.get("cache-control")
    assert response.headers.get("x-accel-buffering") == "no"
    assert response.content.endswith(b"\n\n")

    log = gateway.log.read_text(encoding="utf-8", errors="replace")
    for text in ("must consume", "Asynchronous handler adapted"):
        assert text not in log, f"the gateway log says {text!r}: the stream is not fully async"


@pytest.mark.req("GW-STREAM-2")
def test_gw_stream_2_gateway_sets_the_headers_even_when_the_service_omits_them(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    # A plain (non-chunked) event-stream body from the service, without cache headers:
    # the gateway's own stream response must still carry them.
    token = fake_service.behave(
        body='event: token\ndata: {"text":"plain"}\n\nevent: done\ndata: {"usage":{}}\n\n',
        content_type="text/event-stream",
    )
    response = alice_client.post(STREAM.path, json={"message": f"bare {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0].strip() == "text/event-stream"
    assert "no-cache" in response.headers.get("cache-control", "").lower()
    assert response.headers.get("x-accel-buffering") == "no"
    events, rest = parse_stream(response.content)
    assert [e.event for e in events] == ["token", "done"]
    assert rest == b""


@pytest.mark.req("GW-STREAM-2")
def test_gw_stream_2_the_services_own_cache_and_buffering_headers_are_overridden(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    # The service allows caching and buffering: what the browser gets must not.
    token = fake_service.behave(
        body='event: token\ndata: {"text":"cached?"}\n\nevent: done\ndata: {"usage":{}}\n\n',
        content_type="text/event-stream",
        headers=[["Cache-Control", "public, max-age=600"], ["X-Accel-Buffering", "yes"]],
    )
    response = alice_client.post(STREAM.path, json={"message": f"contrary {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0].strip() == "text/event-stream"
    directives = {
        d.strip().lower() for v in response.headers.get_list("cache-control") for d in v.split(",")
    }
    assert "no-cache" in directives, response.headers.get_list("cache-control")
    assert not directives & {"public", "max-age=600"}, (
        f"the service's caching reached the client: {response.headers.get_list('cache-control')}"
    )
    buffering = response.headers.get_list("x-accel-buffering")
    assert buffering == ["no"], f"X-Accel-Buffering: {buffering}"
    events, rest = parse_stream(response.content)
    assert [e.event for e in events] == ["token", "done"]
    assert rest == b""
