"""Helpers of the gateway suite: clients, leak checks, logs, raw HTTP, extra gateways.

Everything here speaks to the gateway over HTTP (black box) and to the fake service
through its control API; nothing imports the implementation. The proxied routes and
their sample bodies come from spec/ (``harness.spec``: ``route``, ``proxied_routes``).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from harness import observed
from harness.client import (
    Event,
    EventReader,
    Session,
    assert_problem,
    csrf_token,
    http_client,
    observe_leaks,
    parse_stream,
)
from harness.fakes import FakeControl, Record, header_values
from harness.processes import LOOPBACK
from harness.spec import ProxiedRoute, proxied_routes
from harness.system import Fake, Harness, Running, User

#: What a well-formed request id looks like (spec/gateway.openapi.yaml, RequestId).
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

MIB = 1024 * 1024


def route_params(routes: Iterable[ProxiedRoute] | None = None) -> list[Any]:
    """``routes`` (default: every proxied route of the spec) as pytest params with readable ids."""
    chosen = proxied_routes() if routes is None else routes
    return [pytest.param(route, id=route.operation_id) for route in chosen]


# -- clients ------------------------------------------------------------------------------------
@contextlib.contextmanager
def anonymous(base_url: str, **kwargs: Any) -> Iterator[httpx.Client]:
    """A client with a valid CSRF cookie and header but no session: CSRF is not what refuses it."""
    with http_client(base_url, **kwargs) as client:
        response = client.get("/api/auth/csrf/")
        assert response.status_code == 200, response.text
        client.headers["X-CSRFToken"] = csrf_token(client.cookies, response)
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
    """Assert an error answer's ``status``; its problem body (``{}`` if none).

    Its PROB-1 shape and PROB-2 leaks are recorded and judged by those requirements'
    own tests (harness/observed.py), not by the calling test.
    """
    body = assert_problem(response, status)
    observe_leaks(response, secret)
    observed.record("SEC-3", response, security_header_violations(response))
    return body


#: The headers every gateway answer carries (SEC-3).
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


def security_header_violations(response: httpx.Response) -> list[str]:
    """What of SEC-3's headers ``response`` lacks."""
    return [
        f"{name}: {response.headers.get(name)!r}, not {value!r}"
        for name, value in SECURITY_HEADERS.items()
        if (response.headers.get(name) or "").lower() != value.lower()
    ]


def only_value(record: Record, name: str) -> str:
    """The single value of header ``name`` in a recorded upstream request."""
    values = header_values(record, name)
    assert len(values) == 1, f"upstream saw {name} {len(values)} times: {values}"
    return values[0]


def assert_refused_429(response: httpx.Response, secret: str) -> int:
    """A 429 with a whole-seconds Retry-After >= 1; its value (shape and headers: observed)."""
    problem(response, 429, secret)
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit(), f"Retry-After: {retry_after!r}"
    assert int(retry_after) >= 1, f"Retry-After: {retry_after!r}"
    return int(retry_after)


def assert_full_stream(response: httpx.Response) -> None:
    """A 200 event stream that ended with `done` and nothing after it."""
    assert response.status_code == 200, response.text
    events, rest = parse_stream(response.content)
    assert [e.event for e in events][-1:] == ["done"], events
    assert rest == b""


def poll_stream_until_accepted(
    client: httpx.Client,
    route: ProxiedRoute,
    name: str,
    *,
    secret: str | None = None,
    timeout: float = 5.0,
) -> None:
    """Stream on ``route`` until a stream is accepted and ends with ``done``; poll with a deadline.

    Each refusal until then must be a 429 (with ``secret``: a full 429 problem).
    """
    deadline = time.monotonic() + timeout
    for attempt in range(1000):
        response = route.call(client, f"{name} #{attempt}")
        if response.status_code == 200:
            assert_full_stream(response)
            return
        assert response.status_code == 429, response.text
        if secret is not None:
            assert_refused_429(response, secret)
        assert time.monotonic() < deadline, f"no stream slot came free within {timeout}s"
        time.sleep(0.05)  # poll interval, not synchronisation


def assert_not_contacted(fake: FakeControl, token: str | None = None) -> None:
    """The fake service saw no request (with ``token``, or none at all since its reset)."""
    seen = fake.requests(token)
    assert seen == [], f"the service was contacted: {[(r['method'], r['path']) for r in seen]}"


def one_request(fake: FakeControl, token: str) -> Record:
    """The single upstream request that carried ``token``."""
    records = fake.requests(token)
    assert len(records) == 1, f"expected 1 upstream request with {token}, got {len(records)}"
    return records[0]


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
#: An origin a gateway of GW-SESS-7's test lists instead of the default one.
CUSTOM_ORIGIN = "http://app.example:8080"


@pytest.fixture(scope="session")
def tight_gateway(
    harness: Harness, fake_service_server: Fake, users: list[User]
) -> Iterator[Running]:
    """A second gateway with other knobs, shared by the tests that need them.

    A pool of two connections with a 1 s pool timeout (GW-PROXY-7, GW-OVERLOAD-1; or
    the gateway's fixed pool timeout, which the tests read), and a read timeout long
    enough that held streams outlive the pool test. Starting a gateway costs
    seconds, so one instance serves them all.
    """
    running = harness.start_gateway(
        fake_service_server.url,
        users,
        max_connections="2",
        pool_timeout="1",
        read_timeout="10",
        adapt=("pool_timeout",),  # the tests bound their waits by the value it has
    )
    try:
        yield running
    finally:
        running.process.stop()


# -- raw HTTP/1.1: a client that leaves exactly when the test says --------------------------------
def raw_request_bytes(
    base_url: str,
    path: str,
    body: bytes,
    headers: Sequence[tuple[str, str]] = (),
    *,
    content_type: str = "application/json",
) -> bytes:
    """A hand-built ``POST`` (HTTP/1.1, keep-alive, Content-Length) for ``base_url``."""
    host = urlsplit(base_url).netloc
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Accept: */*",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseParser:
    """Incremental parser of one HTTP/1.1 response: head, de-chunked body, SSE events.

    Fed raw bytes in any split, so a test can read a socket at its own pace and still
    know when a complete event has arrived.
    """

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.received = 0  # raw bytes, head and chunk framing included
        self.body_bytes = 0  # body bytes after de-chunking
        self.finished = False  # the terminating zero-length chunk arrived
        self.events: list[Event] = []
        self._head = b""
        self._chunked = False
        self._wire = b""  # undecoded chunked bytes
        self._left = 0  # bytes left in the current chunk
        self._reader = EventReader()

    @property
    def pending(self) -> bytes:
        """Body bytes after the last whole event (a cut mid-event leaves them here)."""
        return self._reader.pending

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def feed(self, data: bytes) -> list[Event]:
        """Take more bytes off the wire; return the events they completed."""
        self.received += len(data)
        if self.status is None:
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return []
            head, data = self._head.split(b"\r\n\r\n", 1)
            status_line, *lines = head.decode("latin-1").split("\r\n")
            self.status = int(status_line.split()[1])
            for line in lines:
                name, _, value = line.partition(":")
                self.headers.append((name.strip().lower(), value.strip()))
            self._chunked = "chunked" in (self.header("transfer-encoding") or "").lower()
        body = self._dechunk(data) if self._chunked else data
        self.body_bytes += len(body)
        events = self._reader.feed(body)
        self.events += events
        return events

    def _dechunk(self, data: bytes) -> bytes:
        self._wire += data
        out = bytearray()
        for _ in range(len(self._wire) + 1):  # each pass consumes bytes or stops
            if self.finished:
                break
            if self._left:
                piece = self._wire[: self._left]
                out += piece
                self._left -= len(piece)
                self._wire = self._wire[len(piece) :]
                if self._left:
                    break
                continue
            if self._wire.startswith(b"\r\n"):  # the CRLF after a chunk's data
                self._wire = self._wire[2:]
            if b"\r\n" not in self._wire:
                break
            size_line, self._wire = self._wire.split(b"\r\n", 1)
            self._left = int(size_line.split(b";")[0], 16)
            self.finished = self._left == 0
        return bytes(out)


class RawRequest:
    """One HTTP/1.1 request on its own TCP connection, read at the test's pace.

    ``abort()`` is an unambiguous client disconnect: no pool of the test's own can keep
    the connection open behind the test's back.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.response = ResponseParser()
        self.closed = False

    @classmethod
    def post(
        cls,
        base_url: str,
        path: str,
        body: bytes,
        headers: Sequence[tuple[str, str]] = (),
        *,
        content_type: str = "application/json",
    ) -> RawRequest:
        """Connect to ``base_url`` and send the request (the answer is not read yet)."""
        parts = urlsplit(base_url)
        assert parts.hostname == LOOPBACK, base_url
        sock = socket.create_connection((LOOPBACK, parts.port or 80), timeout=10.0)
        sock.sendall(raw_request_bytes(base_url, path, body, headers, content_type=content_type))
        return cls(sock)

    @classmethod
    def to_gateway(cls, session: Session, path: str, payload: bytes) -> RawRequest:
        """A JSON ``POST`` to a gateway as the logged-in browser of ``session``."""
        return cls.post(session.base_url, path, payload, list(session.headers()))

    def recv(self, size: int = 65536, timeout: float = 10.0) -> bytes:
        """Up to ``size`` bytes as they come (b"" at the end of the connection)."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(size)
        self.response.feed(data)
        return data

    def read_until(self, done: Callable[[ResponseParser], bool], timeout: float = 10.0) -> None:
        """Read until ``done(response)`` holds; fail at the deadline or at the end of the stream."""
        deadline = time.monotonic() + timeout
        while not done(self.response):
            left = deadline - time.monotonic()
            assert left > 0, f"no such answer within {timeout}s; got {self.response.events}"
            data = self.recv(timeout=left)
            assert data or done(self.response), (
                f"the connection ended first; status {self.response.status}, "
                f"events {[e.event for e in self.response.events]}"
            )

    def read_events(self, count: int, timeout: float = 10.0) -> list[Event]:
        """Read until at least ``count`` complete events arrived; all events so far."""
        self.read_until(lambda r: len(r.events) >= count, timeout)
        return self.response.events

    def read_all(self, timeout: float = 10.0) -> ResponseParser:
        """Read the rest of a chunked answer (the last chunk) or until the connection ends."""
        deadline = time.monotonic() + timeout
        while not self.response.finished:
            left = deadline - time.monotonic()
            assert left > 0, f"the answer did not end within {timeout}s"
            if not self.recv(timeout=left):
                break
        return self.response

    def abort(self) -> None:
        """Leave: shut the connection down in both directions and close it."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def __enter__(self) -> RawRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def assert_absent(fake: FakeControl, token: str, seconds: float, why: str) -> None:
    """Poll for ``seconds`` that no request with ``token`` reached ``fake``.

    A wait for *absence*: there is nothing to wait for, so it runs the whole time;
    it is bounded and says what it proves.
    """
    deadline = time.monotonic() + seconds
    while True:
        seen = fake.requests(token)
        assert not seen, f"{why}: the service received it ({len(seen)} requests)"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)  # poll interval, not synchronisation
