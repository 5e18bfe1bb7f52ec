"""LIMIT-1..4: bounded bodies, bounded streams and rates per user, at the gateway.

Bodies are pushed from raw sockets, so a test decides exactly what the gateway
is offered (a declared length with no body behind it, a chunked body that never
ends, 1 GiB) and sees whether it answers before reading the rest. The per-user
limits run against gateways of their own with tight knobs.
"""

from __future__ import annotations

import contextlib
import json
import math
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from contract_tests.gateway.conftest import (
    MIB,
    RawRequest,
    assert_full_stream,
    assert_not_contacted,
    assert_refused_429,
    poll_stream_until_accepted,
    problem,
    route_params,
)
from harness.client import Session
from harness.fakes import FakeControl
from harness.knobs import not_configurable
from harness.processes import LOOPBACK
from harness.spec import ProxiedRoute, proxied_routes, route
from harness.system import Running, User

MAX_JSON = 1 * MIB
MAX_UPLOAD = 10 * MIB
#: What the gateway may take off the wire of a 1 GiB upload: the limit, the
#: server's buffer and both kernels' socket buffers on loopback.
MAX_ACCEPTED = 64 * MIB
MAX_RSS_GROWTH = 32 * MIB
BOUNDARY = "limit-test-boundary-7d1c"

CHAT = route("chat")
STREAM = route("chat_stream")
FILE = route("chat_file")
QUIZ = route("quiz_generate")
#: The routes with a JSON body (LIMIT-1).
JSON_ROUTES = proxied_routes(uploads=False)


# -- raw requests ---------------------------------------------------------------------------------
@dataclass
class RawAnswer:
    """What came back on a raw connection: the answer (if any) and how much we sent."""

    raw: bytes = b""
    sent: int = 0
    closed: bool = False
    peak_rss_growth: int = 0
    timeline: list[str] = field(default_factory=list)

    def response(self) -> httpx.Response | None:
        """The complete HTTP response, or None if it has not fully arrived."""
        head, sep, body = self.raw.partition(b"\r\n\r\n")
        if not sep:
            return None
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
        if length is None or len(body) < length:
            return None
        return httpx.Response(int(status_line.split()[1]), headers=headers, content=body[:length])


def request_head(
    base_url: str,
    path: str,
    session: Session,
    *,
    content_type: str,
    length: int | None,
) -> bytes:
    """A ``POST`` head as the logged-in browser of ``session``: Content-Length or chunked."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {urlsplit(base_url).netloc}",
        f"Content-Type: {content_type}",
        "Content-Length: " + str(length) if length is not None else "Transfer-Encoding: chunked",
        *(f"{name}: {value}" for name, value in session.headers()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n" if data else b""


@contextlib.contextmanager
def connection(base_url: str) -> Iterator[socket.socket]:
    port = urlsplit(base_url).port
    assert port is not None
    with socket.create_connection((LOOPBACK, port), timeout=10.0) as sock:
        yield sock


def push(
    sock: socket.socket,
    head: bytes,
    body: Callable[[int], bytes],
    total: int,
    *,
    timeout: float,
    rss_of: psutil.Process | None = None,
) -> RawAnswer:
    """Send ``head``, then up to ``total`` body bytes (``body(sent)`` gives the next piece),
    reading at the same time; stop once the answer is complete, the gateway closes,
    or at the deadline. Samples the gateway's RSS growth while it runs.
    """
    answer = RawAnswer()
    sock.sendall(head)
    sock.setblocking(False)
    rss_before = rss_of.memory_info().rss if rss_of else 0
    deadline = time.monotonic() + timeout
    pending = b""
    next_sample = 0.0
    while time.monotonic() < deadline and not answer.closed:
        if rss_of is not None and time.monotonic() >= next_sample:
            growth = rss_of.memory_info().rss - rss_before
            answer.peak_rss_growth = max(answer.peak_rss_growth, growth)
            next_sample = time.monotonic() + 0.05
        want_write = bool(pending) or answer.sent < total
        readable, writable, _ = select.select([sock], [sock] if want_write else [], [], 0.05)
        if readable:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            answer.raw += data
            if not data:
                answer.closed = True
                break
            if answer.response() is not None:
                break
        if writable:
            if not pending:
                pending = body(answer.sent)
            try:
                n = sock.send(pending)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                answer.closed = True
                break
            answer.sent += n
            pending = pending[n:]
    # Whatever else arrives once the gateway has answered (bounded).
    sock.settimeout(0.5)
    with contextlib.suppress(OSError):
        while answer.response() is None and (data := sock.recv(65536)):
            answer.raw += data
    return answer


def refused(answer: RawAnswer, status: int, secret: str) -> dict[str, object]:
    response = answer.response()
    assert response is not None, (
        f"no complete answer after sending {answer.sent} bytes "
        f"(closed: {answer.closed}; got {answer.raw[:300]!r})"
    )
    return problem(response, status, secret)


def json_body(token: str, size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes carrying ``token``."""
    start = json.dumps({"message": f"hello {token}", "pad": ""}).encode()
    assert size >= len(start)
    return start[:-2] + b"x" * (size - len(start)) + b'"}'


# -- LIMIT-1 --------------------------------------------------------------------------------------
@pytest.mark.req("LIMIT-1")
@pytest.mark.parametrize("route", route_params(JSON_ROUTES))
def test_limit_1_declared_json_body_over_1_mib_is_refused_before_it_is_read(
    gateway: Running,
    alice_session: Session,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
) -> None:
    # The length says 1 MiB + 1; no byte of the body is ever sent. A gateway that
    # reads the body before deciding waits for it and never answers.
    head = request_head(
        gateway.url, route.path, alice_session, content_type="application/json", length=MAX_JSON + 1
    )
    with connection(gateway.url) as sock:
        answer = push(sock, head, lambda sent: b"", 0, timeout=5.0)
    refused(answer, 413, secret)
    assert_not_contacted(fake_service)


@pytest.mark.req("LIMIT-1")
def test_limit_1_json_body_of_exactly_1_mib_is_proxied(
    gateway: Running, alice_session: Session, fake_service: FakeControl
) -> None:
    # The limit is 1 MiB, not less: a refusal of everything would pass the tests above.
    token = fake_service.behave()
    with alice_session.client() as client:
        response = client.post(
            CHAT.path,
            content=json_body(token, MAX_JSON),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 200, response.text
    (record,) = fake_service.requests(token)
    assert record["body_size"] == MAX_JSON


@pytest.mark.req("LIMIT-1")
@pytest.mark.parametrize("route", route_params(JSON_ROUTES))
def test_limit_1_chunked_json_body_is_refused_once_past_1_mib(
    gateway: Running,
    alice_session: Session,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
) -> None:
    # No length: 1 MiB + 64 KiB of a JSON string is sent and the body never ends (no
    # last chunk). Only a gateway that counts as it reads and stops past the limit answers.
    token = fake_service.behave()
    start = json.dumps({"message": f"hello {token}", "pad": ""}).encode()[:-2]
    piece = 16 * 1024
    total = len(start) + MAX_JSON + 64 * 1024

    def body(sent: int) -> bytes:
        return chunked(start if sent == 0 else b"x" * piece)

    head = request_head(
        gateway.url, route.path, alice_session, content_type="application/json", length=None
    )
    with connection(gateway.url) as sock:
        answer = push(sock, head, body, total, timeout=10.0)
    refused(answer, 413, secret)
    assert_not_contacted(fake_service, token)


# -- LIMIT-2 --------------------------------------------------------------------------------------
def multipart_start(token: str, file_size: int) -> tuple[bytes, bytes]:
    """(everything before the file's bytes, everything after) of an upload."""
    before = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="message"\r\n\r\n'
        f"summarise {token}\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    return before, f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.mark.req("LIMIT-2")
def test_limit_2_upload_over_10_mib_is_refused_without_contacting_the_service(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    token = fake_service.behave()
    response = alice_client.post(
        FILE.path,
        data={"message": f"summarise {token}"},
        files={"file": ("big.txt", b"a" * (MAX_UPLOAD + 1), "text/plain")},
    )
    problem(response, 413, secret)
    assert_not_contacted(fake_service, token)
    # ... while one of exactly 10 MiB is proxied: the limit is not lower.
    response = alice_client.post(
        FILE.path,
        data={"message": f"summarise {token}"},
        files={"file": ("ok.txt", b"a" * MAX_UPLOAD, "text/plain")},
    )
    assert response.status_code == 200, response.text
    assert len(fake_service.requests(token)) == 1


@pytest.mark.req("LIMIT-2")
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_limit_2_gateway_stops_reading_a_1_gib_upload_near_the_limit(
    gateway: Running,
    alice_session: Session,
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    declared: bool,
) -> None:
    # Warm up the upload path, so code loaded on first use is not counted as growth.
    warm = FILE.call(alice_client, fake_service.behave())
    assert warm.status_code == 200, warm.text
    token = fake_service.behave()
    file_size = 1024 * MIB
    before, after = multipart_start(token, file_size)
    head = request_head(
        gateway.url,
        FILE.path,
        alice_session,
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        length=len(before) + file_size + len(after) if declared else None,
    )
    piece = b"a" * (256 * 1024)

    def body(sent: int) -> bytes:
        data = before if sent == 0 else piece
        return data if declared else chunked(data)

    with connection(gateway.url) as sock:
        answer = push(
            sock,
            head,
            body,
            file_size,
            timeout=15.0,
            rss_of=psutil.Process(gateway.process.pid),
        )
    refused(answer, 413, secret)
    assert answer.sent < MAX_ACCEPTED, f"the gateway took {answer.sent / MIB:.0f} MiB off the wire"
    assert answer.peak_rss_growth <= MAX_RSS_GROWTH, (
        f"the gateway's RSS grew by {answer.peak_rss_growth / MIB:.1f} MiB"
    )
    assert_not_contacted(fake_service, token)


# -- LIMIT-3 --------------------------------------------------------------------------------------
def open_stream(client: httpx.Client, token: str) -> httpx.Response:
    return client.send(STREAM.build(client, token), stream=True)


#: The cap LIMIT-3's tests ask for, and the largest fixed cap they hold streams open against.
STREAM_CAP = "2"
MAX_TESTED_CAP = 16


@pytest.fixture
def streams_gateway(start_gateway: Callable[..., Running]) -> Running:
    """A gateway with a cap of 2 streams per user, or its own fixed cap (the tests adapt)."""
    running = start_gateway(
        max_streams_per_user=STREAM_CAP, read_timeout="30", adapt=("max_streams_per_user",)
    )
    if int(running.knob("max_streams_per_user")) > MAX_TESTED_CAP:
        not_configurable(running.component, ["max_streams_per_user"])
    return running


def stream_cap(running: Running) -> int:
    return int(running.knob("max_streams_per_user"))


@pytest.mark.req("LIMIT-3")
def test_limit_3_stream_past_the_cap_is_refused_and_a_finished_stream_frees_its_slot(
    streams_gateway: Running, alice: User, bob: User, fake_service: FakeControl, secret: str
) -> None:
    cap = stream_cap(streams_gateway)
    alice_session = Session.of(streams_gateway.url, alice)
    bob_session = Session.of(streams_gateway.url, bob)
    holder = fake_service.behave(events=2, hold_after=1)
    with alice_session.client() as client, bob_session.client() as bob_client:
        held: list[httpx.Response] = []
        try:
            for n in range(cap):
                held.append(open_stream(client, f"{holder} #{n}"))
            assert [r.status_code for r in held] == [200] * cap
            fake_service.wait_for(lambda records: len(records) == cap, match=holder)

            over = fake_service.behave()
            assert_refused_429(STREAM.call(client, over), secret)
            assert_not_contacted(fake_service, over)
            # Bob has slots of his own.
            assert_full_stream(STREAM.call(bob_client, fake_service.behave()))

            fake_service.release(holder, count=cap)
            for response in held:
                assert_full_stream(_read(response))
        finally:
            for response in held:
                response.close()
        # Every stream ended: every slot is free again.
        poll_stream_until_accepted(client, STREAM, fake_service.behave())
        assert_full_stream(STREAM.call(client, fake_service.behave()))


def _read(response: httpx.Response) -> httpx.Response:
    response.read()
    return response


@pytest.mark.req("LIMIT-3")
def test_limit_3_a_client_that_leaves_frees_its_stream_slot(
    streams_gateway: Running, alice: User, fake_service: FakeControl, secret: str
) -> None:
    cap = stream_cap(streams_gateway)
    session = Session.of(streams_gateway.url, alice)
    holder = fake_service.behave(events=3, hold_after=1)  # never released
    body = json.dumps({"message": f"hello {holder}"}).encode()
    with contextlib.ExitStack() as stack, session.client() as client:
        browsers = [
            stack.enter_context(RawRequest.to_gateway(session, STREAM.path, body))
            for _ in range(cap)
        ]
        for browser in browsers:
            assert browser.read_events(1)[0].event == "token"
        assert_refused_429(STREAM.call(client, fake_service.behave()), secret)
        browsers[0].abort()
        # A slot comes free once the gateway notices the client left.
        poll_stream_until_accepted(client, STREAM, fake_service.behave())
        replacement = stack.enter_context(RawRequest.to_gateway(session, STREAM.path, body))
        assert replacement.read_events(1)[0].event == "token"
        assert_refused_429(STREAM.call(client, fake_service.behave()), secret)
        still_open = [*browsers[1:], replacement]
        still_open[0].abort()
        poll_stream_until_accepted(client, STREAM, fake_service.behave())


# -- LIMIT-4 --------------------------------------------------------------------------------------
@pytest.mark.req("LIMIT-4")
def test_limit_4_sixth_chat_request_in_the_window_is_refused_and_quiz_has_its_own_bucket(
    start_gateway: Callable[..., Running],
    alice: User,
    bob: User,
    fake_service: FakeControl,
    secret: str,
) -> None:
    # Per day: whatever window the gateway uses (fixed or sliding), the whole test
    # runs inside one of them.
    running = start_gateway(chat_rate="5/d", quiz_rate="3/d")
    alice_session = Session.of(running.url, alice)
    bob_session = Session.of(running.url, bob)
    token = fake_service.behave()
    with alice_session.client() as client, bob_session.client() as bob_client:
        # The three chat routes share one bucket of 5.
        for route in (CHAT, STREAM, FILE, CHAT, STREAM):
            response = route.call(client, token)
            assert response.status_code == 200, f"{route.operation_id}: {response.text}"
        for route in (CHAT, STREAM, FILE):
            over = fake_service.behave()
            retry_after = assert_refused_429(route.call(client, over), secret)
            assert retry_after <= 86400, retry_after
            assert_not_contacted(fake_service, over)
        # Bob has his own counters.
        assert CHAT.call(bob_client, token).status_code == 200
        # Quiz has its own bucket, of 3.
        for _ in range(3):
            response = QUIZ.call(client, token)
            assert response.status_code == 200, response.text
        over = fake_service.behave()
        assert_refused_429(QUIZ.call(client, over), secret)
        assert_not_contacted(fake_service, over)
        assert QUIZ.call(bob_client, token).status_code == 200


@pytest.mark.req("LIMIT-4")
def test_limit_4_retry_after_says_when_the_window_frees(
    start_gateway: Callable[..., Running], alice: User, fake_service: FakeControl, secret: str
) -> None:
    running = start_gateway(chat_rate="2/s")
    session = Session.of(running.url, alice)
    token = fake_service.behave()
    with session.client() as client:
        for _ in range(10):  # 2 per second: a refusal comes within a few requests
            response = CHAT.call(client, token)
            if response.status_code != 200:
                break
        retry_after = assert_refused_429(response, secret)
        assert retry_after == 1, f"a 1-second window frees within 1 s, not {retry_after}"
        # Waiting as told is the behaviour under test.
        time.sleep(retry_after)
        response = CHAT.call(client, token)
        assert response.status_code == 200, response.text


#: How long the Retry-After tests let pass between a refusal and the next request.
PAUSE = 2.5


def exhaust(client: httpx.Client, token: str) -> float:
    """Chat until a request is refused; when (``time.monotonic()``) the refusal arrived."""
    for _ in range(10):  # a fresh 2/m bucket refuses the third request at the latest
        response = CHAT.call(client, token)
        if response.status_code == 429:
            return time.monotonic()
        assert response.status_code == 200, response.text
    pytest.fail("10 chat requests in a row were admitted at 2/m")


def refused_later(
    client: httpx.Client, token: str, since: float, secret: str
) -> tuple[int | None, float]:
    """Chat once ``PAUSE`` s after ``since``: (its Retry-After, or None if admitted; when sent).

    Admitted means a fixed window ended meanwhile (an aligned one may end at any moment):
    the caller starts over.
    """
    # Letting the clock advance is the behaviour under test; it is short and bounded.
    time.sleep(max(0.0, since + PAUSE - time.monotonic()))
    sent = time.monotonic()
    response = CHAT.call(client, token)
    if response.status_code == 200:
        return None, sent
    return assert_refused_429(response, secret), sent


@pytest.mark.req("LIMIT-4")
def test_limit_4_retry_after_counts_down_to_the_end_of_the_window_not_the_whole_window(
    start_gateway: Callable[..., Running], alice: User, fake_service: FakeControl, secret: str
) -> None:
    """A refusal PAUSE s after the bucket was full says at most ``ceil(60 - PAUSE)``.

    Every request the bucket held was admitted before the refusal that ends
    ``exhaust``, so whatever the window (fixed and started at the first request,
    aligned to the clock, sliding, counting refusals or not) it frees within 60 s of
    that refusal's arrival; the later refusal is answered after ``sent``, so its
    whole seconds until then are at most ``ceil(60 - (sent - last))``.
    """
    running = start_gateway(chat_rate="2/m")
    token = fake_service.behave()
    with Session.of(running.url, alice).client() as client:
        for _ in range(3):  # a window that ends during a pause ends once a minute at most
            last = exhaust(client, token)
            retry_after, sent = refused_later(client, token, last, secret)
            if retry_after is None:
                continue
            bound = math.ceil(60 - (sent - last))
            assert retry_after <= bound, (
                f"Retry-After {retry_after} {sent - last:.1f} s after the bucket was full: "
                f"the window frees within {bound} s (a Retry-After of the whole window?)"
            )
            return
    pytest.fail("every refusal was followed by a new window: the bucket did not hold")


@pytest.mark.req("LIMIT-4")
def test_limit_4_retry_after_decreases_as_the_window_runs_out(
    start_gateway: Callable[..., Running], alice: User, fake_service: FakeControl, secret: str
) -> None:
    running = start_gateway(chat_rate="2/m")
    token = fake_service.behave()
    with Session.of(running.url, alice).client() as client:
        for _ in range(3):  # a window that ends during a pause ends once a minute at most
            first, _ = refused_later(client, token, exhaust(client, token), secret)
            if first is None:
                continue
            answered = time.monotonic()
            second, second_sent = refused_later(client, token, answered, secret)
            if second is None:
                continue
            # The server's clock advanced at least this much between the two refusals.
            elapsed = second_sent - answered
            assert second <= first - math.floor(elapsed), (
                f"Retry-After {first}, then {second} {elapsed:.1f} s later: "
                "it does not count down to the end of the window"
            )
            return
    pytest.fail("every refusal was followed by a new window: the bucket did not hold")
