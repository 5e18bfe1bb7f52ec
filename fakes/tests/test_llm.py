"""Self-tests of the fake LLM, against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.llm import create_app
from fakes.llm.server import AnnouncingServer, build_config

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    ready = threading.Event()
    urls: list[str] = []

    def announce(url: str) -> None:
        urls.append(url)
        ready.set()

    server = AnnouncingServer(build_config(create_app(), port=0, log_level="error"), announce)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert ready.wait(START_TIMEOUT), "fake LLM did not start"
    yield urls[0]
    server.should_exit = True
    thread.join(START_TIMEOUT)


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        assert c.post("/_control/reset").status_code == 204
        yield c


def token() -> str:
    return f"tok-{uuid.uuid4().hex[:12]}"


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m-1", "messages": [{"role": "user", "content": text}], **extra}


def behave(client: httpx.Client, match: str, **fields: Any) -> None:
    response = client.post("/_control/behaviours", json={"match": match, **fields})
    assert response.status_code == 201, response.text
    assert response.json() == {"match": match}


def wait_until(check: Callable[[], Any], timeout: float = 2.0) -> Any:
    """Poll `check` until it returns something truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met before the deadline")


def records(client: httpx.Client, match: str | None = None) -> list[dict[str, Any]]:
    params = {"match": match} if match else None
    return client.get("/_control/requests", params=params).json()


def data_lines(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line.removeprefix("data: ")


def read_stream(client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        return response, list(data_lines(response))


def contents(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if line == "[DONE]":
            continue
        for choice in json.loads(line).get("choices", []):
            if "content" in choice["delta"]:
                out.append(choice["delta"]["content"])
    return out


def test_models(client: httpx.Client) -> None:
    response = client.get("/v1/models")
    assert response.json() == {
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fakes"}],
    }


def test_non_stream_shape_and_deterministic_reply(client: httpx.Client) -> None:
    body = {
        "model": "m-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello   big\nworld"},
        ],
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert data["model"] == "m-1"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "You said: Hello big world"}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert client.post("/v1/chat/completions", json=body).json()["choices"] == data["choices"]


def test_echo_is_cut_to_200_chars(client: httpx.Client) -> None:
    data = client.post("/v1/chat/completions", json=chat("x" * 300)).json()
    assert data["choices"][0]["message"]["content"] == "You said: " + "x" * 200


def test_stream_shape_tokens_and_done(client: httpx.Client) -> None:
    body = chat("one two three", stream=True, stream_options={"include_usage": True})
    response, lines = read_stream(client, body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m-1" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert contents(lines) == ["You ", "said: ", "one ", "two ", "three"]
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}

    _, plain = read_stream(client, chat("one two three", stream=True))
    assert plain[-1] == "[DONE]"
    assert all("usage" not in json.loads(line) for line in plain[:-1])


def test_quiz_has_the_requested_number_of_questions(client: httpx.Client) -> None:
    text = "Make a quiz about Python generators with 5 multiple-choice questions."
    body = chat(text, response_format={"type": "json_object"})
    quiz = json.loads(
        client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    )
    assert quiz["topic"] == text[:60]
    assert len(quiz["questions"]) == 5
    for i, question in enumerate(quiz["questions"]):
        assert question["question"].startswith(f"Question {i + 1} about ")
        assert len(set(question["options"])) == 4
        assert question["answer_index"] == i % 4
        assert question["explanation"]

    default = chat("A quiz on rivers", response_format={"type": "json_schema", "json_schema": {}})
    message = client.post("/v1/chat/completions", json=default).json()["choices"][0]["message"]
    assert len(json.loads(message["content"])["questions"]) == 3

    _, lines = read_stream(client, {**body, "stream": True})
    assert len(json.loads("".join(contents(lines)))["questions"]) == 5


def test_status_with_retry_after_then_times_runs_out(client: httpx.Client) -> None:
    match = token()
    behave(client, match, status=429, retry_after=7, times=1)
    response = client.post("/v1/chat/completions", json=chat(f"hi {match}"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert set(response.json()["error"]) == {"message", "type", "code"}
    again = client.post("/v1/chat/completions", json=chat(f"hi {match}"))
    assert again.status_code == 200
    assert [r["match"] for r in records(client)] == [match, None]


def test_most_recent_matching_behaviour_wins(client: httpx.Client) -> None:
    first, second = token(), token()
    behave(client, first, status=500)
    behave(client, second, reply="second wins")
    response = client.post("/v1/chat/completions", json=chat(f"{first} {second}"))
    assert response.json()["choices"][0]["message"]["content"] == "second wins"


def test_reply_content_and_tokens(client: httpx.Client) -> None:
    reply, content, counted = token(), token(), token()
    behave(client, reply, reply="Fixed answer here")
    behave(client, content, content="not json")
    behave(client, counted, tokens=4, token_delay=0.05)
    assert contents(read_stream(client, chat(reply, stream=True))[1]) == [
        "Fixed ",
        "answer ",
        "here",
    ]
    quiz = chat(content, response_format={"type": "json_object"})
    message = client.post("/v1/chat/completions", json=quiz).json()["choices"][0]["message"]
    assert message["content"] == "not json"
    started = time.monotonic()
    _, lines = read_stream(client, chat(counted, stream=True))
    assert time.monotonic() - started >= 0.15
    assert contents(lines) == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]


def test_first_token_delay_applies_to_non_stream(client: httpx.Client) -> None:
    match = token()
    behave(client, match, first_token_delay=0.2)
    started = time.monotonic()
    assert client.post("/v1/chat/completions", json=chat(match)).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_malformed(client: httpx.Client) -> None:
    match = token()
    behave(client, match, malformed=True)
    response = client.post("/v1/chat/completions", json=chat(match))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):  # noqa: PT011 - any JSON decoding error
        response.json()
    _, lines = read_stream(client, chat(match, stream=True))
    with pytest.raises(ValueError):  # noqa: PT011
        json.loads(lines[0])


def test_hold_after_until_release(client: httpx.Client, base_url: str) -> None:
    match = token()
    behave(client, match, hold_after=2)
    with (
        httpx.Client(base_url=base_url, timeout=10) as streamer,
        streamer.stream(
            "POST", "/v1/chat/completions", json=chat(f"a b c {match}", stream=True)
        ) as response,
    ):
        lines = data_lines(response)
        first = [next(lines), next(lines)]
        assert contents(first) == ["You ", "said: "]
        assert client.post(f"/_control/release/{match}").json() == {"match": match, "released": 1}
        rest = list(lines)
    assert rest[-1] == "[DONE]"
    assert contents(rest) == ["a ", "b ", "c ", match]
    assert records(client, match)[0]["completed"] is True


def test_reset_releases_held_requests(client: httpx.Client, base_url: str) -> None:
    match = token()
    behave(client, match, hold_after=0)
    with (
        httpx.Client(base_url=base_url, timeout=10) as streamer,
        streamer.stream("POST", "/v1/chat/completions", json=chat(match, stream=True)) as response,
    ):
        wait_until(lambda: records(client, match))
        assert client.post("/_control/reset").status_code == 204
        assert list(data_lines(response))[-1] == "[DONE]"
    assert records(client) == []
    assert client.get("/_control/behaviours").json() == []


def test_fail_after_drop_cuts_the_connection(client: httpx.Client) -> None:
    match = token()
    behave(client, match, fail_after=2)
    seen: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream(
            "POST", "/v1/chat/completions", json=chat(f"x y z {match}", stream=True)
        ) as r,
    ):
        seen.extend(data_lines(r))
    assert contents(seen) == ["You ", "said: "]
    record = wait_until(lambda: records(client, match))[0]
    assert record["completed"] is False
    assert record["aborted"] is False
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v1/chat/completions", json=chat(match))


def test_fail_after_error_event(client: httpx.Client) -> None:
    match = token()
    behave(client, match, fail_after=1, fail_mode="error_event")
    _, lines = read_stream(client, chat(f"x y z {match}", stream=True))
    assert contents(lines[:-1]) == ["You "]
    assert json.loads(lines[-1])["error"]["type"] == "server_error"
    assert "[DONE]" not in lines


def send_raw(base_url: str, body: dict[str, Any]) -> socket.socket:
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    raw = json.dumps(body).encode()
    sock = socket.create_connection((host, port), timeout=5)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    )
    sock.sendall(head.encode() + raw)
    return sock


def test_hang_then_client_abort_is_recorded(client: httpx.Client, base_url: str) -> None:
    match = token()
    behave(client, match, hang=True)
    sock = send_raw(base_url, chat(match))
    record = wait_until(lambda: records(client, match))[0]
    assert record["aborted"] is False
    sock.close()
    closed = time.monotonic()
    wait_until(lambda: records(client, match)[0]["aborted"], timeout=1.0)
    assert time.monotonic() - closed < 0.5
    assert records(client, match)[0]["completed"] is False


def test_abort_mid_stream_is_recorded(client: httpx.Client, base_url: str) -> None:
    match = token()
    behave(client, match, token_delay=5)
    sock = send_raw(base_url, chat(f"a b {match}", stream=True))
    sock.settimeout(5)
    assert b"You " in sock.recv(65536) or b"You " in sock.recv(65536)
    sock.close()
    record = wait_until(lambda: records(client, match)[0]["aborted"] and records(client, match)[0])
    assert record["completed"] is False
    assert record["bytes_sent"] > 0


def test_recording(client: httpx.Client) -> None:
    match = token()
    headers = [("Authorization", "Bearer k-1"), ("X-Dup", "1"), ("X-Dup", "2")]
    body = chat(f"record me {match}", user="user-42")
    response = client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200
    [record] = records(client, match)
    assert record["match"] is None  # no behaviour registered: found by the token in its body
    assert record["method"] == "POST"
    assert record["path"] == "/v1/chat/completions"
    assert ["authorization", "Bearer k-1"] in record["headers"]
    assert [v for k, v in record["headers"] if k == "x-dup"] == ["1", "2"]
    assert record["json"] == body
    assert json.loads(record["body"]) == body
    assert record["body_size"] == len(record["body"].encode())
    assert record["user"] == "user-42"
    assert record["http_version"] == "1.1"
    assert record["client"].startswith("127.0.0.1:")
    assert record["completed"] is True
    assert record["aborted"] is False
    assert record["bytes_sent"] == len(response.content)
    assert records(client, "no-such-token") == []


def test_invalid_request_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json={"messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert client.post("/v1/chat/completions", content=b"{oops").status_code == 400
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    assert records(client)[1]["json"] is None


def test_control_validation(client: httpx.Client) -> None:
    bad = client.post("/_control/behaviours", json={"match": "x", "tokens": -1})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["status"] == 422
    assert client.post("/_control/behaviours", json={"match": "x", "nope": 1}).status_code == 422
    assert client.post("/_control/behaviours", content=b"{").status_code == 400
    assert client.post("/_control/release/never-registered").status_code == 404
    assert client.get("/_control/health").json() == {"status": "ok"}
    assert records(client) == []


def test_connections_counter(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as resetter:
        resetter.post("/_control/reset")
    with httpx.Client(base_url=base_url) as c:
        for _ in range(3):
            c.get("/v1/models")
        assert c.get("/_control/connections").json() == {"accepted": 1}
        host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
        with socket.create_connection((host, port), timeout=5):
            wait_until(lambda: c.get("/_control/connections").json()["accepted"] == 2)


def test_apps_do_not_share_state() -> None:
    one, two = create_app(), create_app()
    assert one.state.fake is not two.state.fake


def test_cli_prints_its_url() -> None:
    command = [sys.executable, "-m", "fakes.llm", "--port", "0", "--log-level", "error"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            readable, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
            assert readable, "no ready line"
            line = process.stdout.readline()
            url = line.split()[3]
            assert url.startswith("http://127.0.0.1:")
            assert f"LLM_BASE_URL={url}/v1" in line
            assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "fake-model"
        finally:
            process.terminate()
            process.wait(START_TIMEOUT)


def test_content_type_replaces_the_answers_own(client: httpx.Client) -> None:
    match = token()
    behave(client, match, content_type="text/html")
    response = client.post("/v1/chat/completions", json=chat(match))
    assert response.status_code == 200
    assert response.headers.get_list("content-type") == ["text/html"]
    assert response.json()["object"] == "chat.completion"  # the body is unchanged
    streamed, lines = read_stream(client, chat(match, stream=True))
    assert streamed.headers.get_list("content-type") == ["text/html"]
    assert lines[-1] == "[DONE]"
    behave(client, match, status=503, content_type="text/plain")
    failed = client.post("/v1/chat/completions", json=chat(match))
    assert failed.status_code == 503
    assert failed.headers["content-type"] == "text/plain"
    refused = client.post("/_control/behaviours", json={"match": match, "content_type": "é\n"})
    assert refused.status_code >= 400
