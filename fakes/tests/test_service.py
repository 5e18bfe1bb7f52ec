"""Self-tests of the fake service: real uvicorn on 127.0.0.1, real HTTP, no mocks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from fakes.service import create_app
from fakes.service.server import build_server

REPO = Path(__file__).resolve().parents[2]
SECRET = "fake-secret-for-tests"
STARTUP_TIMEOUT = 10.0


# -- harness ---------------------------------------------------------------------------


@contextlib.contextmanager
def running(secret: str | None = None, keep_alive: float = 5.0) -> Iterator[str]:
    """The fake on a free loopback port in a thread; yields its URL once it listens."""
    ready = threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    server = build_server(create_app(secret), port=0, keep_alive=keep_alive, on_ready=on_ready)
    thread = threading.Thread(target=server.run, name="fake-service", daemon=True)
    thread.start()
    try:
        assert ready.wait(STARTUP_TIMEOUT), "fake service did not start"
        yield urls[0]
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running() as url:
        yield url


@pytest.fixture(scope="module")
def secret_url() -> Iterator[str]:
    with running(secret=SECRET) as url:
        yield url


@pytest.fixture
def control(base_url: str) -> Iterator[httpx.Client]:
    """A client for the control API (and plain calls), on a freshly reset fake."""
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        assert client.post("/_control/reset").status_code == 204
        yield client


def token() -> str:
    return f"tok-{uuid.uuid4().hex[:12]}"


def behave(control: httpx.Client, **fields: Any) -> str:
    """Register a behaviour under a fresh token and return the token."""
    match = fields.pop("match", None) or token()
    response = control.post("/_control/behaviours", json={"match": match, **fields})
    assert response.status_code == 201, response.text
    assert response.json() == {"match": match}
    return match


def records(control: httpx.Client, match: str | None = None) -> list[dict[str, Any]]:
    params = {"match": match} if match else None
    return control.get("/_control/requests", params=params).json()


def poll(check: Callable[[], Any], timeout: float = 2.0) -> Any:
    """Call ``check`` until it returns something truthy, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def only_record(control: httpx.Client, match: str, **expected: Any) -> dict[str, Any]:
    """Wait until the single record of ``match`` shows ``expected``; return it."""

    def check() -> dict[str, Any] | None:
        found = records(control, match)
        if len(found) == 1 and all(found[0][k] == v for k, v in expected.items()):
            return found[0]
        return None

    return poll(check)


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def read_until(chunks: Iterator[bytes], count: int, limit: int = 1000) -> bytes:
    """Read from a raw byte iterator until ``count`` complete SSE events arrived."""
    buffer = b""
    for _ in range(limit):
        if buffer.count(b"\n\n") >= count:
            return buffer
        buffer += next(chunks)
    raise AssertionError("too many reads")


@contextlib.contextmanager
def streaming(base_url: str, message: str) -> Iterator[httpx.Response]:
    """A streamed POST /chatbot/stream/ on its own client (its own connection)."""
    with (
        httpx.Client(base_url=base_url, timeout=5.0) as client,
        client.stream("POST", "/chatbot/stream/", json={"message": message}) as response,
    ):
        yield response


def drain(response: httpx.Response, sink: bytearray) -> None:
    """Read a response to its end, keeping what arrived even if the read fails."""
    for chunk in response.iter_raw():
        sink.extend(chunk)


def raw_exchange(base_url: str, request: bytes, limit: int = 100_000) -> bytes:
    """Send raw bytes, read until the server closes (the request says Connection: close)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5.0) as sock:
        sock.sendall(request)
        received = []
        for _ in range(limit):
            data = sock.recv(65536)
            if not data:
                return b"".join(received)
            received.append(data)
    raise AssertionError("server never closed")


def post_raw(base_url: str, path: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return raw_exchange(base_url, head.encode() + payload)


def dechunk(raw: bytes) -> tuple[list[bytes], bool]:
    """The HTTP chunks of a raw response and whether the terminating chunk came."""
    body = raw.split(b"\r\n\r\n", 1)[1]
    chunks = []
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return chunks, True
        chunks.append(rest[:size])
        body = rest[size + 2 :]
    return chunks, False


# -- default answers -------------------------------------------------------------------


def test_health_needs_nothing(control: httpx.Client) -> None:
    response = control.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_chat_echoes_with_usage(control: httpx.Client) -> None:
    response = control.post("/chatbot/", json={"message": "hello there", "history": []})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["reply"] == "echo: hello there"
    assert set(data["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_is_lenient(control: httpx.Client) -> None:
    for content in (b"not json", b"[1, 2]", b'{"history": 3}'):
        response = control.post("/chatbot/", content=content)
        assert response.status_code == 200
        assert response.json()["reply"] == "echo: "


def test_stream_defaults(control: httpx.Client) -> None:
    response = control.post("/chatbot/stream/", json={"message": "hi"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = parse_sse(response.text)
    assert events[:3] == [
        ("token", {"text": "echo "}),
        ("token", {"text": "hi"}),
        ("token", {"text": " 2"}),
    ]
    assert events[3][0] == "done"
    assert events[3][1]["usage"]["completion_tokens"] == 3
    assert len(events) == 4
    assert '"text":"echo "' in response.text  # compact JSON on the wire


def test_stream_sends_one_chunk_per_event(base_url: str, control: httpx.Client) -> None:
    match = behave(control, events=5, event_size=200)
    chunks, terminated = dechunk(post_raw(base_url, "/chatbot/stream/", {"message": match}))
    assert terminated
    assert [len(c) for c in chunks[:5]] == [200] * 5
    assert all(c.startswith(b"event: ") and c.endswith(b"\n\n") for c in chunks)
    assert parse_sse(chunks[-1].decode())[0][0] == "done"


def test_file_reports_name_size_and_digest(control: httpx.Client) -> None:
    content = b"line one\nline two\n" * 100
    response = control.post(
        "/chatbot/file/",
        files={"file": ("notes.md", content, "text/markdown")},
        data={"message": "summarise"},
    )
    assert response.status_code == 200
    digest = hashlib.sha256(content).hexdigest()
    reply = f"file notes.md {len(content)} bytes sha256 {digest}: summarise"
    assert response.json()["reply"] == reply


def test_file_without_fields_is_empty(control: httpx.Client) -> None:
    response = control.post("/chatbot/file/", json={"message": "x"})
    assert response.json()["reply"] == f"file  0 bytes sha256 {hashlib.sha256().hexdigest()}: "


def test_quiz_is_valid(control: httpx.Client) -> None:
    body = {"topic": "graphs", "num_questions": 5, "difficulty": "hard"}
    data = control.post("/quiz/", json=body).json()
    assert data["topic"] == "graphs"
    assert len(data["questions"]) == 5
    for question in data["questions"]:
        assert set(question) == {"question", "options", "answer_index", "explanation"}
        assert len(question["options"]) == 4
        assert 0 <= question["answer_index"] <= 3


def test_unknown_route_and_wrong_method_are_problems(control: httpx.Client) -> None:
    missing = control.post("/nope/", json={})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = control.get("/chatbot/")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["status"] == 405


# -- secret ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([], 401),
        ([("X-Internal-Secret", "")], 401),
        ([("X-Internal-Secret", "wrong")], 403),
        ([("X-Internal-Secret", SECRET), ("X-Internal-Secret", SECRET)], 403),
        ([("X-Internal-Secret", "sécret".encode())], 403),
        ([("X-Internal-Secret", SECRET)], 200),
    ],
)
def test_secret_is_checked(secret_url: str, headers: list[tuple[str, Any]], status: int) -> None:
    with httpx.Client(base_url=secret_url, timeout=5.0) as client:
        response = client.post("/chatbot/", json={"message": "x"}, headers=headers)
    assert response.status_code == status
    if status >= 400:
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == status
        assert SECRET not in response.text


def test_secret_spares_health_and_control(secret_url: str) -> None:
    with httpx.Client(base_url=secret_url, timeout=5.0) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/_control/connections").status_code == 200
        refused = client.post("/quiz/", json={}, headers={"X-Internal-Secret": "no"})
        assert refused.status_code == 403
        recorded = client.get("/_control/requests").json()
        assert recorded[-1]["status"] == 403


# -- behaviours ------------------------------------------------------------------------


def test_status_gives_a_problem(control: httpx.Client) -> None:
    match = behave(control, status=503, headers=[["Retry-After", "7"]])
    response = control.post("/chatbot/", json={"message": match})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "7"
    assert set(response.json()) == {"type", "title", "status", "detail"}
    assert response.json()["status"] == 503


def test_status_with_body(control: httpx.Client) -> None:
    body = {"type": "about:blank", "title": "Unprocessable", "status": 422, "detail": "no"}
    match = behave(control, status=422, body=body)
    response = control.post("/quiz/", json={"topic": match})
    assert response.status_code == 422
    assert response.json() == body
    assert response.headers["content-type"] == "application/problem+json"


def test_status_on_stream_route_is_not_a_stream(control: httpx.Client) -> None:
    match = behave(control, status=500)
    response = control.post("/chatbot/stream/", json={"message": match})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"


def test_reply_and_times(control: httpx.Client) -> None:
    match = behave(control, reply={"reply": "custom", "usage": {}}, times=1)
    first = control.post("/chatbot/", json={"message": match})
    second = control.post("/chatbot/", json={"message": match})
    assert first.json() == {"reply": "custom", "usage": {}}
    assert second.json()["reply"] == f"echo: {match}"
    assert [r["match"] for r in records(control, match)] == [match, match]


def test_newest_matching_behaviour_wins(control: httpx.Client) -> None:
    old = behave(control, status=500)
    new = behave(control, status=418)
    response = control.post("/chatbot/", json={"message": f"{old} {new}"})
    assert response.status_code == 418


def test_content_type_override(control: httpx.Client) -> None:
    match = behave(control, content_type="text/html; charset=utf-8")
    response = control.post("/chatbot/", json={"message": match})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.json()["reply"] == f"echo: {match}"


def test_text_body(control: httpx.Client) -> None:
    match = behave(control, status=502, body="<html>bad gateway</html>", content_type="text/html")
    response = control.post("/chatbot/", json={"message": match})
    assert response.status_code == 502
    assert response.text == "<html>bad gateway</html>"
    assert response.headers["content-type"] == "text/html"


def test_malformed(control: httpx.Client) -> None:
    match = behave(control, malformed=True)
    response = control.post("/quiz/", json={"topic": match})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_hop_by_hop_headers_reach_the_wire(control: httpx.Client) -> None:
    # What uvicorn 0.54 (httptools) puts on the wire: every pair below, unchanged except
    # for lower-cased names, plus its own server/date/content-type/content-length.
    pairs = [
        ["Connection", "x-hop"],
        ["X-Hop", "1"],
        ["Keep-Alive", "timeout=5"],
        ["Set-Cookie", "svc=1; Path=/"],
        ["Set-Cookie", "svc2=2; Path=/"],
        ["X-Internal-Secret", "leak"],
        ["X-User-Id", "9"],
    ]
    match = behave(control, headers=pairs)
    response = control.post("/chatbot/", json={"message": match})
    received = response.headers.multi_items()
    for name, value in pairs:
        assert (name.lower(), value) in received
    assert response.json()["reply"] == f"echo: {match}"


def test_connection_close_header_closes(base_url: str, control: httpx.Client) -> None:
    match = behave(control, headers=[["Connection", "close"]])
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        client.post("/chatbot/", json={"message": match})
        client.get("/health")
    ports = {r["client"] for r in records(control) if r["path"] in ("/chatbot/", "/health")}
    assert len(ports) == 2  # uvicorn closed the first connection after the response


def test_framing_headers_are_refused(control: httpx.Client) -> None:
    for name in ("Content-Length", "transfer-encoding"):
        body = {"match": token(), "headers": [[name, "1"]]}
        assert control.post("/_control/behaviours", json=body).status_code == 422


def test_delay(control: httpx.Client) -> None:
    match = behave(control, delay=0.3)
    started = time.monotonic()
    response = control.post("/chatbot/", json={"message": match})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_hang_is_recorded_as_aborted(base_url: str, control: httpx.Client) -> None:
    match = behave(control, hang=True)
    timeout = httpx.Timeout(5.0, read=0.3)
    with (
        httpx.Client(base_url=base_url, timeout=timeout) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/chatbot/", json={"message": match})
    record = only_record(control, match, aborted=True)
    assert record["completed"] is False
    assert record["status"] is None


def test_abort_mid_stream_is_seen_promptly(base_url: str, control: httpx.Client) -> None:
    match = behave(control, events=5, interval=0.05)
    with streaming(base_url, match) as response:
        read_until(response.iter_raw(), 1)
    closed = time.monotonic()
    record = only_record(control, match, aborted=True)
    assert time.monotonic() - closed < 0.5
    assert record["completed"] is False
    assert record["bytes_sent"] > 0


def test_hold_after_and_release(base_url: str, control: httpx.Client) -> None:
    match = behave(control, hold_after=1)
    with streaming(base_url, match) as response:
        chunks = response.iter_raw()
        first = read_until(chunks, 1)
        assert parse_sse(first.decode()) == [("token", {"text": "echo "})]
        held = only_record(control, match)
        assert held["completed"] is False
        assert held["bytes_sent"] == len(first)
        assert control.post(f"/_control/release/{match}").json() == {"released": 1}
        rest = first + b"".join(chunks)
    assert [name for name, _ in parse_sse(rest.decode())] == ["token"] * 3 + ["done"]
    only_record(control, match, completed=True, aborted=False)


def test_release_without_held_request(control: httpx.Client) -> None:
    assert control.post("/_control/release/nothing").json() == {"released": 0}


def test_drop_after_cuts_the_connection(base_url: str, control: httpx.Client) -> None:
    match = behave(control, events=4, drop_after=2)
    received = bytearray()
    with streaming(base_url, match) as response, pytest.raises(httpx.RemoteProtocolError):
        drain(response, received)
    assert [name for name, _ in parse_sse(bytes(received).decode())] == ["token", "token"]
    record = only_record(control, match)
    assert record["completed"] is False
    assert record["bytes_sent"] == len(received)


def test_partial_after_sends_half_an_event(base_url: str, control: httpx.Client) -> None:
    match = behave(control, events=3, partial_after=1)
    chunks, terminated = dechunk(post_raw(base_url, "/chatbot/stream/", {"message": match}))
    assert not terminated
    assert len(chunks) == 2
    assert parse_sse(chunks[0].decode()) == [("token", {"text": "echo "})]
    assert chunks[1].startswith(b"event: token\ndata: {")
    assert not chunks[1].endswith(b"\n\n")


def test_error_after_ends_with_an_error_event(control: httpx.Client) -> None:
    match = behave(control, events=3, error_after=1)
    response = control.post("/chatbot/stream/", json={"message": match})
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["token", "error"]
    assert set(events[1][1]) == {"type", "title", "status", "detail"}
    only_record(control, match, completed=True)


def test_done_false_and_interval(control: httpx.Client) -> None:
    match = behave(control, events=3, interval=0.1, done=False)
    started = time.monotonic()
    response = control.post("/chatbot/stream/", json={"message": match})
    assert time.monotonic() - started >= 0.2
    assert [name for name, _ in parse_sse(response.text)] == ["token"] * 3


@pytest.mark.parametrize(("total", "done"), [(1_000_003, True), (100, False), (10, True)])
def test_total_bytes_is_exact(base_url: str, control: httpx.Client, total: int, done: bool) -> None:
    match = behave(control, total_bytes=total, chunk_size=4096, done=done)
    size = 0
    tail = b""
    with streaming(base_url, match) as response:
        for chunk in response.iter_raw():
            size += len(chunk)
            tail = (tail + chunk)[-200:]
    assert size == total
    assert (b"event: done" in tail) is (done and total > 100)
    only_record(control, match, completed=True, bytes_sent=total)


def test_stream_on_any_route(control: httpx.Client) -> None:
    match = behave(control, stream=True, events=2)
    response = control.post("/quiz/", json={"topic": match})
    assert response.headers["content-type"] == "text/event-stream"
    assert [name for name, _ in parse_sse(response.text)] == ["token", "token", "done"]


def test_multipart_body_is_matched(control: httpx.Client) -> None:
    match = behave(control, status=415)
    response = control.post(
        "/chatbot/file/", files={"file": ("a.bin", f"xx{match}xx".encode(), "application/x-bin")}
    )
    assert response.status_code == 415
    assert records(control, match)[0]["match"] == match


def test_behaviours_are_validated(control: httpx.Client) -> None:
    bad = [
        {"status": 500},
        {"match": ""},
        {"match": "m", "sttus": 500},
        {"match": "m", "status": "500"},
        {"match": "m", "delay": -1},
        {"match": "m", "hang": 1},
        {"match": "m", "headers": [["Bad Name", "x"]]},
        {"match": "m", "reply": "text"},
    ]
    for body in bad:
        response = control.post("/_control/behaviours", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    assert control.post("/_control/behaviours", content=b"{").status_code == 400
    assert control.get("/_control/behaviours").json() == []


# -- recording, connections, reset -----------------------------------------------------


def test_requests_are_recorded(base_url: str, control: httpx.Client) -> None:
    match = token()
    headers = [("X-Dup", "1"), ("X-Dup", "2"), ("X-Request-ID", "abc")]
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        client.post("/chatbot/", json={"message": match}, headers=headers)
        client.post("/chatbot/", content=("x" * 100_000 + match).encode())
    first, second = records(control, match)[0], records(control)[-1]
    assert [v for n, v in first["headers"] if n == "x-dup"] == ["1", "2"]
    assert ["x-request-id", "abc"] in first["headers"]
    assert first["method"] == "POST"
    assert first["path"] == "/chatbot/"
    assert json.loads(first["body"]) == {"message": match}
    assert first["match"] is None
    assert first["http_version"] == "1.1"
    assert first["client"].startswith("127.0.0.1:")
    assert first["client"] == second["client"]  # same keep-alive connection
    assert first["completed"] is True
    assert first["aborted"] is False
    assert first["bytes_sent"] > 0
    assert first["status"] == 200
    assert second["body_size"] == 100_000 + len(match)
    assert len(second["body"]) == 64 * 1024
    assert [r["id"] for r in records(control)] == sorted(r["id"] for r in records(control))


def test_connections_are_counted(base_url: str, control: httpx.Client) -> None:
    with httpx.Client(base_url=base_url, timeout=5.0) as client:
        client.get("/health")
        client.get("/health")
        assert control.get("/_control/connections").json()["accepted"] == 1
    with (
        httpx.Client(base_url=base_url, timeout=5.0) as one,
        httpx.Client(base_url=base_url, timeout=5.0) as two,
    ):
        control.post("/_control/reset")
        one.get("/health")
        two.get("/health")
        counts = control.get("/_control/connections").json()
        assert counts["accepted"] == 2
        assert counts["tracked"] is True
        open_with_both = counts["open"]
        ports = {r["client"] for r in records(control)}
        assert len(ports) == 2
    poll(lambda: control.get("/_control/connections").json()["open"] == open_with_both - 2)


def test_reset_forgets_and_releases(base_url: str, control: httpx.Client) -> None:
    match = behave(control, hold_after=0)
    with streaming(base_url, match) as response:
        assert response.status_code == 200  # headers arrive before the hold
        only_record(control, match)
        assert control.post("/_control/reset").status_code == 204
        assert len(parse_sse(response.read().decode())) == 4
    assert records(control) == []
    assert control.get("/_control/behaviours").json() == []
    assert control.get("/_control/connections").json()["accepted"] == 0
    plain = control.post("/chatbot/", json={"message": match})
    assert plain.json()["reply"] == f"echo: {match}"


# -- command line ----------------------------------------------------------------------


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "no URL printed"
    return process.stdout.readline().strip()


def test_command_line_prints_url_and_applies_keep_alive() -> None:
    command = [sys.executable, "-m", "fakes.service", "--port", "0", "--keep-alive", "0.5"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as process:
        try:
            url = _first_line(process, STARTUP_TIMEOUT)
            assert url.startswith("http://127.0.0.1:")
            parts = urlsplit(url)
            with socket.create_connection((parts.hostname, parts.port), timeout=5.0) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
                response = b""
                for _ in range(100):
                    if response.endswith(b'{"status":"ok"}'):
                        break
                    data = sock.recv(4096)
                    assert data
                    response += data
                idle = time.monotonic()
                assert sock.recv(4096) == b""  # the server closes the idle keep-alive connection
                assert 0.3 < time.monotonic() - idle < 3.0
        finally:
            process.terminate()
            process.wait(STARTUP_TIMEOUT)


@pytest.mark.parametrize("path", ["/chatbot/", "/chatbot/stream/"])
def test_close_drops_the_connection_before_headers(control: httpx.Client, path: str) -> None:
    match = behave(control, close=True)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        control.post(path, json={"message": match})
    record = only_record(control, match)
    assert record["bytes_sent"] == 0
    assert record["completed"] is False
