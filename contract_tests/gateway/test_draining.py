"""OPS-PROBE-3, OPS-DRAIN-1..3: a gateway told to stop (SIGTERM) while it works.

One scene, watched from every side: a gateway of its own (drain timeout 2 s) holds a
stream the service never finishes, a stream that finishes within the drain, and a
JSON request the service answers 1 s late, when SIGTERM arrives. Each test then
judges its own requirement of that scene.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest

from contract_tests.gateway.conftest import RawRequest
from contract_tests.probes import assert_not_ready_after_sigterm, readiness_answers
from harness.client import Session
from harness.fakes import FakeControl
from harness.processes import LOOPBACK
from harness.spec import route
from harness.system import Fake, Harness, Running, User

DRAIN = 2.0
#: OPS-DRAIN-2: the upstream request of a cut stream is closed within this after the cut;
#: OPS-DRAIN-3: the process is gone within this after the drain timeout.
GRACE = 1.0
CHAT = route("chat")
STREAM = route("chat_stream")


def _body(token: str) -> bytes:
    return json.dumps({"message": f"hello {token}"}).encode()


@dataclass
class Scene:
    """What happened around one SIGTERM."""

    gateway: Running
    fake: FakeControl
    held_token: str
    short_token: str
    json_token: str
    signalled_at: float = 0.0
    exit_code: int | None = None
    exited_after: float | None = None
    held_unfinished: str | None = None
    short_unfinished: str | None = None
    held_events: list[object] = field(default_factory=list)
    held_pending: bytes = b""
    held_ended_after: float | None = None
    short_events: list[object] = field(default_factory=list)
    json_response: httpx.Response | None = None
    json_error: str | None = None
    ready_answers: list[str] = field(default_factory=list)
    new_connection: str = ""


def _watch_readiness(scene: Scene, until: float) -> None:
    """Readiness on fresh connections until ``until``, then one request on a new connection."""
    scene.ready_answers = readiness_answers(scene.gateway.url, until)
    scene.new_connection = _try_new_connection(scene.gateway.url)


def _try_new_connection(url: str) -> str:
    """One request on a new connection: what came back, if anything."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((LOOPBACK, parts.port or 80), timeout=2.0) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.settimeout(2.0)
            head = sock.recv(64)
    except OSError as exc:  # refused or reset
        return f"refused ({type(exc).__name__})"
    return f"answered {head[:20]!r}" if head else "closed unanswered"


def _read_to_end(browser: RawRequest) -> str | None:
    """Read the answer to its end; why it did not end in time, or None when it did."""
    try:
        browser.read_all(timeout=DRAIN + GRACE + 3)
    except (AssertionError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _wait_exit(scene: Scene) -> None:
    scene.exit_code = scene.gateway.process.wait_exit(DRAIN + GRACE + 5)
    scene.exited_after = time.monotonic() - scene.signalled_at


@pytest.fixture(scope="module")
def scene(harness: Harness, fake_service_server: Fake, users: list[User]) -> Iterator[Scene]:
    fake = fake_service_server.control
    fake.reset()
    running = harness.start_gateway(
        fake_service_server.url, users, drain_timeout=str(DRAIN), read_timeout="10"
    )
    try:
        yield _play(running, fake, Session.of(running.url, users[0]))
    finally:
        running.process.stop()


def _play(running: Running, fake: FakeControl, session: Session) -> Scene:
    held = fake.behave(events=3, hold_after=1)  # never released: outlasts the drain
    short = fake.behave(events=4, interval=0.3)  # about 1 s: ends within the drain
    slow_json = fake.behave(delay=1.0)
    scene = Scene(running, fake, held, short, slow_json)

    def send_json() -> None:
        try:
            with session.client() as client:
                scene.json_response = CHAT.call(client, slow_json)
        except httpx.HTTPError as exc:
            scene.json_error = f"{type(exc).__name__}: {exc}"

    with (
        RawRequest.to_gateway(session, STREAM.path, _body(held)) as held_browser,
        RawRequest.to_gateway(session, STREAM.path, _body(short)) as short_browser,
    ):
        held_browser.read_events(1)
        short_browser.read_events(1)
        sender = threading.Thread(target=send_json, daemon=True)
        sender.start()
        fake.wait_for(lambda records: len(records) == 1, match=slow_json)

        scene.signalled_at = time.monotonic()
        running.process.signal(signal.SIGTERM)
        exiting = threading.Thread(target=_wait_exit, args=(scene,), daemon=True)
        exiting.start()
        watcher = threading.Thread(
            target=_watch_readiness, args=(scene, scene.signalled_at + 1.0), daemon=True
        )
        watcher.start()

        scene.short_unfinished = _read_to_end(short_browser)
        scene.short_events = list(short_browser.response.events)
        scene.held_unfinished = _read_to_end(held_browser)
        scene.held_ended_after = time.monotonic() - scene.signalled_at
        scene.held_events = list(held_browser.response.events)
        scene.held_pending = held_browser.response.pending
        for thread in (sender, watcher, exiting):
            thread.join(timeout=DRAIN + GRACE + 10)
    return scene


@pytest.mark.req("OPS-PROBE-3")
def test_ops_probe_3_readiness_fails_from_the_moment_of_sigterm(scene: Scene) -> None:
    assert_not_ready_after_sigterm(scene.ready_answers)


@pytest.mark.req("OPS-DRAIN-1")
def test_ops_drain_1_a_json_request_in_flight_gets_its_answer(scene: Scene) -> None:
    assert scene.json_error is None, f"the JSON request in flight failed: {scene.json_error}"
    assert scene.json_response is not None
    assert scene.json_response.status_code == 200, scene.json_response.text
    assert scene.json_response.json().get("reply"), scene.json_response.text


@pytest.mark.req("OPS-DRAIN-1")
def test_ops_drain_1_no_request_is_served_on_a_new_connection(scene: Scene) -> None:
    assert not scene.new_connection.startswith("answered"), scene.new_connection


@pytest.mark.req("OPS-DRAIN-2")
def test_ops_drain_2_a_stream_that_ends_within_the_drain_ends_with_done(scene: Scene) -> None:
    assert scene.short_unfinished is None, f"the stream did not end: {scene.short_unfinished}"
    names = [e.event for e in scene.short_events]  # type: ignore[attr-defined]
    assert names[-1:] == ["done"], names
    assert "error" not in names, names


@pytest.mark.req("OPS-DRAIN-2")
def test_ops_drain_2_a_stream_that_outlasts_the_drain_ends_with_one_503_error_event(
    scene: Scene,
) -> None:
    assert scene.held_unfinished is None, (
        f"the stream did not end within the drain timeout + {GRACE:g} s: {scene.held_unfinished}"
    )
    names = [e.event for e in scene.held_events]  # type: ignore[attr-defined]
    assert names.count("error") == 1, names
    assert names[-1] == "error", names
    assert names[0] == "token", names
    assert scene.held_pending == b"", f"cut mid-event: {scene.held_pending!r}"
    problem = scene.held_events[-1].json()  # type: ignore[attr-defined]
    assert problem.get("status") == 503, problem
    ended = scene.held_ended_after
    assert ended is not None
    assert DRAIN - 0.2 <= ended <= DRAIN + GRACE, (
        f"the stream ended {ended:.2f} s after SIGTERM; the drain timeout is {DRAIN} s"
    )


@pytest.mark.req("OPS-DRAIN-2")
def test_ops_drain_2_the_cut_streams_upstream_request_is_closed(scene: Scene) -> None:
    deadline = scene.signalled_at + DRAIN + GRACE
    (record,) = scene.fake.requests(scene.held_token)
    if not record["aborted"]:
        left = deadline - time.monotonic()
        scene.fake.wait_for(
            lambda records: records[0]["aborted"], match=scene.held_token, timeout=max(left, 0.1)
        )
    assert not scene.fake.requests(scene.held_token)[0]["completed"]


@pytest.mark.req("OPS-DRAIN-3")
def test_ops_drain_3_the_gateway_exits_within_the_drain_timeout_plus_1s(scene: Scene) -> None:
    assert scene.exit_code is not None, "the gateway did not exit"
    assert scene.exit_code in (0, -signal.SIGTERM), f"exit code {scene.exit_code}"
    assert scene.exited_after is not None
    assert scene.exited_after <= DRAIN + GRACE, (
        f"exited {scene.exited_after:.2f} s after SIGTERM (drain timeout {DRAIN} s)"
    )
