"""OPS-LOG-1: one structured log line per request, found in the gateway's log by its request id.

A gateway of its own with the JSON log format on answers a known mix; each answer's
``X-Request-ID`` must then name exactly one JSON line of its log, with the fields the
spec lists, and the probes must name none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from contract_tests.gateway.conftest import RawRequest, anonymous
from harness.client import Session, http_client
from harness.fakes import FakeControl, new_token
from harness.spec import route
from harness.system import Fake, Harness, Running, User

CHAT = route("chat")
STREAM = route("chat_stream")
#: How long a line may take to reach the log after its answer (buffers, a busy machine).
WRITTEN_WITHIN = 5.0
FIELDS = {
    "request_id", "user_id", "method", "route", "status", "upstream_status", "bytes",
    "ttfb_ms", "duration_ms",
}  # fmt: skip


@dataclass
class Logged:
    gateway: Running
    user_id: object

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON object line of the log that names a request id."""
        found = []
        for line in self.gateway.log.read_text(encoding="utf-8", errors="replace").splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                data = json.loads(line[start:])
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("request_id"):
                found.append(data)
        return found

    def line_of(self, request_id: str | None) -> dict[str, Any]:
        """The one line of ``request_id``, polled for until it is written."""
        assert request_id, "the answer carries no X-Request-ID"
        deadline = time.monotonic() + WRITTEN_WITHIN
        while True:
            mine = [line for line in self.lines() if line["request_id"] == request_id]
            if mine or time.monotonic() >= deadline:
                break
            time.sleep(0.05)  # poll interval, not synchronisation
        assert len(mine) == 1, f"{len(mine)} log lines for request {request_id}: {mine}"
        line = mine[0]
        missing = FIELDS - set(line)
        assert not missing, f"the line lacks {sorted(missing)}: {line}"
        return line


@pytest.fixture(scope="module")
def logged(
    harness: Harness, fake_service_server: Fake, users: list[User], alice: User
) -> Iterator[Logged]:
    running = harness.start_gateway(fake_service_server.url, users, log_format="json")
    try:
        with Session.of(running.url, alice).client() as client:
            me = client.get("/api/auth/me/").json()
        yield Logged(running, me.get("id"))
    finally:
        running.process.stop()


@pytest.fixture
def client(logged: Logged, alice: User) -> Iterator[httpx.Client]:
    with Session.of(logged.gateway.url, alice).client() as client:
        yield client


def _request_id(response: httpx.Response) -> str | None:
    return response.headers.get("x-request-id")


@pytest.mark.req("OPS-LOG-1")
def test_ops_log_1_a_chat_is_one_line_with_user_route_and_both_statuses(
    logged: Logged, client: httpx.Client, fake_service: FakeControl
) -> None:
    response = CHAT.call(client, fake_service.behave())
    assert response.status_code == 200, response.text
    line = logged.line_of(_request_id(response))
    assert line["method"] == "POST"
    assert line["route"] == CHAT.path
    assert line["status"] == 200
    assert line["upstream_status"] == 200
    assert line["user_id"] is not None
    assert str(line["user_id"]) == str(logged.user_id)
    assert line["bytes"] == len(response.content)
    assert 0 <= line["ttfb_ms"] <= line["duration_ms"], line


@pytest.mark.req("OPS-LOG-1")
def test_ops_log_1_a_refused_request_has_no_user_and_no_upstream_status(
    logged: Logged, fake_service: FakeControl
) -> None:
    token = fake_service.behave()
    with anonymous(logged.gateway.url) as client:
        response = CHAT.call(client, token)
    assert response.status_code == 401
    line = logged.line_of(_request_id(response))
    assert (line["status"], line["user_id"], line["upstream_status"]) == (401, None, None), line


@pytest.mark.req("OPS-LOG-1")
@pytest.mark.parametrize(
    ("behaviour", "end"),
    [({"events": 3}, "done"), ({"events": 3, "error_after": 1}, "error")],
    ids=["done", "error"],
)
def test_ops_log_1_a_stream_says_how_it_ended(
    logged: Logged,
    client: httpx.Client,
    fake_service: FakeControl,
    behaviour: dict[str, object],
    end: str,
) -> None:
    response = STREAM.call(client, fake_service.behave(**behaviour))
    assert response.status_code == 200, response.text
    line = logged.line_of(_request_id(response))
    assert line["route"] == STREAM.path
    assert line["stream_end"] == end, line
    assert line["bytes"] == len(response.content), line


@pytest.mark.req("OPS-LOG-1")
def test_ops_log_1_a_stream_whose_client_left_says_so(
    logged: Logged, alice: User, fake_service: FakeControl
) -> None:
    token = fake_service.behave(events=3, hold_after=1)
    session = Session.of(logged.gateway.url, alice)
    body = json.dumps({"message": f"hello {token}"}).encode()
    with RawRequest.to_gateway(session, STREAM.path, body) as browser:
        browser.read_events(1)
        request_id = browser.response.header("x-request-id")
        browser.abort()
    assert logged.line_of(request_id)["stream_end"] == "client_left"


@pytest.mark.req("OPS-LOG-1")
def test_ops_log_1_an_unrouted_path_is_not_logged_raw(logged: Logged) -> None:
    marker = new_token()
    with http_client(logged.gateway.url) as client:
        response = client.get(f"/api/{marker}/")
    line = logged.line_of(_request_id(response))
    assert marker not in json.dumps(line), f"a raw path in the log: {line}"
    assert line["status"] == 404
