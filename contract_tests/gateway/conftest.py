"""Helpers of the gateway suite: routes, anonymous and second-user clients, leak checks, logs.

Everything here speaks to the gateway over HTTP (black box) and to the fake service
through its control API; nothing imports the implementation.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract_tests.harness.client import assert_no_leak, assert_problem, http_client
from contract_tests.harness.fakes import FakeControl, Record, header_values
from contract_tests.harness.processes import LOOPBACK
from contract_tests.harness.system import Fake, Harness, Running, User

#: What a well-formed request id looks like (spec/gateway.openapi.yaml, RequestId).
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

MIB = 1024 * 1024

Headers = dict[str, str] | list[tuple[str, str]] | None


@dataclass(frozen=True)
class Route:
    """A proxied gateway route, the service path it maps to, and how to call it."""

    name: str
    path: str
    upstream: str
    streams: bool = False

    def call(self, client: httpx.Client, token: str, *, headers: Headers = None) -> httpx.Response:
        """A valid request for this route with ``token`` in its body (selects a behaviour)."""
        return client.send(self.build(client, token, headers=headers))

    def build(self, client: httpx.Client, token: str, *, headers: Headers = None) -> httpx.Request:
        """The same request, built but not sent.

        ``headers`` replace the client's headers of the same name; a list of pairs
        keeps duplicates, in order.
        """
        return client.build_request("POST", self.path, headers=headers, **self.payload(token))

    def payload(self, token: str) -> dict[str, Any]:
        if self.name == "file":
            return {
                "data": {"message": f"summarise {token}"},
                "files": {"file": ("notes.txt", f"notes for {token}\n".encode(), "text/plain")},
            }
        if self.name == "quiz":
            return {"json": {"topic": f"HTTP {token}", "num_questions": 2, "difficulty": "easy"}}
        return {"json": {"message": f"hello {token}"}}


CHAT = Route("chat", "/api/chat/", "/chatbot/")
STREAM = Route("stream", "/api/chat/stream/", "/chatbot/stream/", streams=True)
FILE = Route("file", "/api/chat/file/", "/chatbot/file/")
QUIZ = Route("quiz", "/api/quiz/generate/", "/quiz/")
ROUTES = (CHAT, STREAM, FILE, QUIZ)
JSON_ROUTES = (CHAT, STREAM, QUIZ)


def route_params(routes: tuple[Route, ...] = ROUTES) -> list[Any]:
    """``routes`` as pytest params with readable ids."""
    return [pytest.param(route, id=route.name) for route in routes]


# -- clients ------------------------------------------------------------------------------------
@contextlib.contextmanager
def anonymous(base_url: str, **kwargs: Any) -> Iterator[httpx.Client]:
    """A client with a valid CSRF cookie and header but no session: CSRF is not what refuses it."""
    with http_client(base_url, **kwargs) as client:
        response = client.get("/api/auth/csrf/")
        assert response.status_code == 200, response.text
        client.headers["X-CSRFToken"] = response.json()["csrfToken"]
        yield client


@pytest.fixture
def anon_client(gateway: Running) -> Iterator[httpx.Client]:
    with anonymous(gateway.url) as client:
        yield client


def user_id(client: httpx.Client) -> int:
    """The id of the user logged in on ``client`` (GET /api/auth/me/)."""
    response = client.get("/api/auth/me/")
    assert response.status_code == 200, response.text
    value = response.json()["id"]
    assert isinstance(value, int), value
    return value


# -- what must never leak -----------------------------------------------------------------------
def problem(response: httpx.Response, status: int, secret: str) -> dict[str, Any]:
    """PROB-1 shape with ``status`` plus the PROB-2 leak checks; the problem body."""
    body = assert_problem(response, status)
    assert_no_leak(response, secret)
    return body


def only_value(record: Record, name: str) -> str:
    """The single value of header ``name`` in a recorded upstream request."""
    values = header_values(record, name)
    assert len(values) == 1, f"upstream saw {name} {len(values)} times: {values}"
    return values[0]


def assert_not_contacted(fake: FakeControl, token: str | None = None) -> None:
    """The fake service saw no request (with ``token``, or none at all since its reset)."""
    seen = fake.requests(token)
    assert seen == [], f"the service was contacted: {[(r['method'], r['path']) for r in seen]}"


def one_request(fake: FakeControl, token: str) -> Record:
    """The single upstream request that carried ``token``."""
    records = fake.requests(token)
    assert len(records) == 1, f"expected 1 upstream request with {token}, got {len(records)}"
    return records[0]


# -- holds --------------------------------------------------------------------------------------
def release_held(fake: FakeControl, token: str, count: int = 1, timeout: float = 5.0) -> None:
    """Release ``count`` requests parked at ``hold_after``, waiting until they are parked.

    A release only wakes requests parked at that moment, so a release sent just
    before the fake parks would be lost; poll until ``count`` were released.
    """
    deadline = time.monotonic() + timeout
    released = 0
    with httpx.Client(base_url=fake.url, timeout=5.0, trust_env=False) as control:
        while True:
            response = control.post(f"/_control/release/{token}")
            response.raise_for_status()
            released += int(response.json().get("released", 0))
            if released >= count:
                return
            assert time.monotonic() < deadline, f"only {released}/{count} held requests released"
            time.sleep(0.02)  # poll interval, not synchronisation


# -- logs ---------------------------------------------------------------------------------------
class LogWatch:
    """Lines a process appends to its log after a mark (polled: the process writes async)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = self._size()

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def new_text(self) -> str:
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 5.0) -> str:
        """Poll the new text until ``predicate`` holds for one of its lines; return that line."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.new_text().splitlines():
                if predicate(line):
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no matching line in {self.path.name} within {timeout}s; "
                    f"new text: {self.new_text()[-2000:]!r}"
                )
            time.sleep(0.05)  # poll interval, not synchronisation


# -- an address that never accepts --------------------------------------------------------------
@contextlib.contextmanager
def blackhole(port: int = 0) -> Iterator[str]:
    """A loopback URL (on ``port``, or a free one) whose TCP connects hang.

    A listening socket with backlog 0 that never accepts, its queue filled by our
    own connects: the kernel then drops further SYNs, and a connect waits until
    its timeout. The property is checked before use, so a test cannot pass by luck.
    """
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK, port))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((LOOPBACK, port))
        with socket.socket() as probe:
            probe.settimeout(0.3)
            with pytest.raises(TimeoutError):
                probe.connect((LOOPBACK, port))
        yield f"http://{LOOPBACK}:{port}"


# -- extra gateways -----------------------------------------------------------------------------
#: The origin the tight gateway lists instead of the default one.
CUSTOM_ORIGIN = "http://app.example:8080"


@pytest.fixture(scope="session")
def tight_gateway(
    harness: Harness, fake_service_server: Fake, users: list[User]
) -> Iterator[Running]:
    """A second gateway with other knobs, shared by the tests that need them.

    Another origin (GW-SESS-6/7 must follow the configuration), a pool of two
    connections with a 1 s pool timeout (GW-PROXY-7), and a read timeout long
    enough that held streams outlive the pool test. Starting a gateway costs
    seconds, so one instance serves them all.
    """
    running = harness.start_gateway(
        fake_service_server.url,
        users,
        cors_origins=CUSTOM_ORIGIN,
        max_connections="2",
        pool_timeout="1",
        read_timeout="10",
    )
    try:
        yield running
    finally:
        running.process.stop()
