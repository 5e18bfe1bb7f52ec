"""FAULT-1..4: a broken service gets the browser clear errors, never a 500 or a hang.

FAULT-1/2 need a service that is down, then comes up (again) where the gateway
already points: the fake service is started on a port fixed before the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from harness.client import Session, parse_stream
from harness.fakes import FakeControl
from harness.processes import LOOPBACK, free_port
from harness.spec import ProxiedRoute, proxied_routes, route
from harness.system import Fake, Harness, Running, User

from .conftest import problem, route_params

CHAT = route("chat")
STREAM = route("chat_stream")
#: The routes with a JSON body, and those of them that answer JSON or stream.
JSON_ROUTES = proxied_routes(uploads=False)
ANSWER_ROUTES = proxied_routes(uploads=False, streams=False)
STREAM_ROUTES = proxied_routes(uploads=False, streams=True)

#: The read timeout of the gateway this module starts itself for FAULT-1/2 (seconds).
READ_TIMEOUT = 1.0
#: The default gateway's read timeout (harness GATEWAY_KNOBS).
DEFAULT_READ_TIMEOUT = 3.0


# -- helpers ------------------------------------------------------------------------------------
def session_client(session: Session, timeout: float) -> httpx.Client:
    """A client of ``session`` whose every request is bounded by ``timeout``."""
    return httpx.Client(
        base_url=session.base_url,
        cookies=httpx.Cookies(session.cookies),
        headers={"X-CSRFToken": session.csrf},
        timeout=timeout,
        trust_env=False,
    )


def post(client: httpx.Client, route: ProxiedRoute, token: str) -> tuple[httpx.Response, float]:
    """``route`` with ``token`` in its body, read to the end; the response and seconds taken."""
    started = time.monotonic()
    response = route.call(client, token)
    return response, time.monotonic() - started


def is_event_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return response.status_code == 200 and content_type.startswith("text/event-stream")


def assert_one_error_event(response: httpx.Response, secret: str) -> dict[str, Any]:
    """A started stream that ends with exactly one ``error`` event, on an event boundary."""
    events, rest = parse_stream(response.content)
    assert rest == b"", f"the stream ended inside an event: {rest!r}"
    names = [e.event for e in events]
    assert names[-1:] == ["error"], f"the stream did not end with an error: {names}"
    assert set(names[:-1]) <= {"token"}, f"not only tokens before the error: {names}"
    body = events[-1].json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"error event lacks {key!r}: {body}"
    assert body["status"] >= 500, body
    assert secret not in response.text
    return body


def assert_relay_failure(response: httpx.Response, secret: str) -> None:
    """FAULT-4: 502 problem+json, or one error event once a stream started; never a 500."""
    assert response.status_code != 500, f"a 500: {response.text[:300]}"
    if is_event_stream(response):
        assert assert_one_error_event(response, secret)["status"] == 502
    else:
        problem(response, 502, secret)


# -- FAULT-1 ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pointed:
    """A gateway pointed at a loopback port where the service is not started yet."""

    port: int
    gateway: Running
    session: Session


@pytest.fixture(scope="module")
def pointed(harness: Harness, users: list[User], alice: User) -> Iterator[Pointed]:
    """One gateway for FAULT-1 and FAULT-2 (a gateway costs seconds to start).

    It starts while nothing listens at ``port``; each test starts (and stops) the fake
    service there itself, so between tests the service is down again. FAULT-1 comes
    first in this module, so the gateway it sees has never reached the service.
    """
    port = free_port()
    running = harness.start_gateway(
        f"http://{LOOPBACK}:{port}", users, read_timeout=str(READ_TIMEOUT)
    )
    try:
        yield Pointed(port, running, Session.of(running.url, alice))
    finally:
        running.process.stop()


@pytest.mark.req("FAULT-1")
def test_fault_1_gateway_started_while_the_service_is_down_recovers_by_itself(
    harness: Harness, pointed: Pointed, secret: str
) -> None:
    fake: Fake | None = None
    with session_client(pointed.session, timeout=READ_TIMEOUT + 5) as client:
        try:
            for route in (CHAT, STREAM):
                response, _ = post(client, route, "while-down")
                problem(response, 502, secret)
            fake = harness.start_fake_service(port=pointed.port)
            # The gateway was not restarted: it must find the service on its own.
            deadline = time.monotonic() + 5.0
            response, _ = post(client, CHAT, "after-up")
            while response.status_code != 200 and time.monotonic() < deadline:
                problem(response, 502, secret)
                time.sleep(0.1)  # poll interval, not synchronisation
                response, _ = post(client, CHAT, "after-up")
            assert response.status_code == 200, f"still failing: {response.text[:300]}"
            assert response.json()["reply"] == "echo: hello after-up"
            streamed, _ = post(client, STREAM, "after-up")
            events, rest = parse_stream(streamed.content)
            assert streamed.status_code == 200, streamed.text[:300]
            assert rest == b""
            assert [e.event for e in events][-1] == "done", events
            assert pointed.gateway.process.poll() is None, "the gateway exited"
        finally:
            if fake is not None:
                fake.process.stop()


# -- FAULT-2 ------------------------------------------------------------------------------------
WORKERS = 20
MAX_ROUNDS = 400  # per worker: bounds the load loop whatever happens
AFTER_RESTART = 3  # requests each worker must complete, all successfully, after the restart


@dataclass
class Outcome:
    """One request of the load: what it was, when, how long, and what was wrong with it."""

    kind: str
    started: float
    elapsed: float
    ok: bool
    problem: str | None = None  # why the answer breaks FAULT-2 (None: acceptable)


@dataclass
class Load:
    """Shared state of the load generator."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    outcomes: list[Outcome] = field(default_factory=list)


def judge(kind: str, status: int, content_type: str, body: bytes) -> tuple[bool, str | None]:
    """(succeeded, problem): 200, or 502/504 problem+json, or a stream with one error event."""
    if status == 200 and kind == "stream":
        events, rest = parse_stream(body)
        names = [e.event for e in events]
        if rest:
            return False, f"stream ended inside an event: {rest[:80]!r}"
        if names and names[-1] == "done" and "error" not in names:
            return True, None
        if names and names[-1] == "error" and names.count("error") == 1:
            return False, None
        return False, f"stream ended without done or one error: {names}"
    if status == 200:
        try:
            json.loads(body)
        except ValueError:
            return False, f"200 that is not JSON: {body[:80]!r}"
        return True, None
    if status in (502, 504):
        if not content_type.startswith("application/problem+json"):
            return False, f"{status} with content type {content_type!r}"
        data = json.loads(body)
        if data.get("status") != status:
            return False, f"{status} with problem {data}"
        return False, None
    return False, f"status {status}: {body[:200]!r}"


async def worker(client: httpx.AsyncClient, load: Load, tokens: dict[str, str]) -> None:
    for round_ in range(MAX_ROUNDS):
        if load.stop.is_set():
            return
        kind = "stream" if round_ % 2 else "chat"
        path = STREAM.path if kind == "stream" else CHAT.path
        started = time.monotonic()
        try:
            async with client.stream(
                "POST", path, json={"message": f"load {tokens[kind]}"}
            ) as response:
                body = await response.aread()
            ok, why = judge(
                kind, response.status_code, response.headers.get("content-type", ""), body
            )
        except httpx.HTTPError as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        load.outcomes.append(Outcome(kind, started, time.monotonic() - started, ok, why))


async def until(predicate: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {within}s"
        await asyncio.sleep(0.02)  # poll interval, not synchronisation


@pytest.mark.req("FAULT-2")
@pytest.mark.asyncio
async def test_fault_2_service_killed_and_restarted_under_load_fails_only_in_flight_requests(
    harness: Harness, pointed: Pointed
) -> None:
    port, running, session = pointed.port, pointed.gateway, pointed.session
    fakes = [harness.start_fake_service(port=port)]
    try:
        # Slow enough that some requests are in flight when the service dies.
        tokens = {
            "chat": fakes[0].control.behave(delay=0.05),
            "stream": fakes[0].control.behave(events=4, interval=0.03),
        }
        load = Load()
        clients = [
            httpx.AsyncClient(
                base_url=running.url,
                cookies=httpx.Cookies(session.cookies),
                headers={"X-CSRFToken": session.csrf},
                timeout=READ_TIMEOUT + 5,
                trust_env=False,
            )
            for _ in range(WORKERS)
        ]
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
            tasks = [asyncio.create_task(worker(c, load, tokens)) for c in clients]
            try:
                await until(lambda: sum(o.ok for o in load.outcomes) >= 2 * WORKERS, 10, "warm-up")
                fakes[0].process.signal(signal.SIGKILL)
                assert fakes[0].process.wait_exit(5) is not None, "the fake service survived"
                killed = time.monotonic()
                await until(
                    lambda: any(o.started > killed and not o.ok for o in load.outcomes),
                    10,
                    "a failure while the service is down",
                )
                fakes.append(await asyncio.to_thread(harness.start_fake_service, port=port))
                restarted = time.monotonic()

                def after() -> list[Outcome]:
                    return [o for o in load.outcomes if o.started >= restarted]

                await until(
                    lambda: len(after()) >= AFTER_RESTART * WORKERS, 20, "load after the restart"
                )
            finally:
                load.stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), timeout=READ_TIMEOUT + 10)
    finally:
        for fake in fakes:
            fake.process.stop()

    limit = READ_TIMEOUT + 2.0
    wrong = [o for o in load.outcomes if o.problem is not None]
    assert not wrong, f"{len(wrong)} answers break FAULT-2, e.g. {wrong[:5]}"
    slow = [o for o in load.outcomes if o.elapsed > limit]
    assert not slow, f"{len(slow)} requests took longer than {limit}s, e.g. {slow[:5]}"
    assert any(not o.ok for o in load.outcomes if killed <= o.started < restarted)
    failed_after = [o for o in load.outcomes if o.started >= restarted and not o.ok]
    assert not failed_after, f"requests sent after the restart failed: {failed_after[:5]}"


# -- FAULT-3 ------------------------------------------------------------------------------------
@pytest.fixture
def bounded_client(alice_session: Session) -> Iterator[httpx.Client]:
    """Alice at the default gateway; no request may outlast its read timeout by much."""
    with session_client(alice_session, timeout=DEFAULT_READ_TIMEOUT + 3) as client:
        yield client


@pytest.mark.req("FAULT-3")
@pytest.mark.parametrize("route", route_params(JSON_ROUTES))
def test_fault_3_service_that_never_answers_gives_504_within_the_read_timeout(
    bounded_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    token = fake_service.behave(hang=True)
    response, elapsed = post(bounded_client, route, token)
    problem(response, 504, secret)
    assert elapsed <= DEFAULT_READ_TIMEOUT + 1.0, f"504 after {elapsed:.2f}s"


@pytest.mark.req("FAULT-3")
def test_fault_3_stream_that_stalls_ends_with_one_error_event_within_the_read_timeout(
    bounded_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    token = fake_service.behave(events=5, hold_after=2)  # never released
    with bounded_client.stream("POST", STREAM.path, json={"message": token}) as response:
        assert is_event_stream(response), response.status_code
        body = b""
        stalled_at = None
        for chunk in response.iter_raw():
            body += chunk
            if stalled_at is None and len(parse_stream(body)[0]) >= 2:
                stalled_at = time.monotonic()  # the second event: the service stalls here
        ended = time.monotonic()
    assert stalled_at is not None, body
    events, rest = parse_stream(body)
    assert rest == b"", f"the stream ended inside an event: {rest!r}"
    assert [e.event for e in events] == ["token", "token", "error"], events
    error = assert_one_error_event(httpx.Response(200, content=body), secret)
    assert error["status"] == 504, error  # a read timeout (GW-PROXY-7)
    waited = ended - stalled_at
    assert waited <= DEFAULT_READ_TIMEOUT + 1.0, f"error after {waited:.2f}s"


# -- FAULT-4 ------------------------------------------------------------------------------------
#: Bounds every FAULT-4 request: no answer by then is a hang.
NO_HANG = DEFAULT_READ_TIMEOUT + 3.0
BIG_HEADER = [["X-Big", "a" * (8 * 1024 + 1)]]

FAULT_4_CASES: list[Any] = [
    pytest.param(each, fields, id=f"{name}-{each}")
    for name, fields, routes in [
        ("close-before-headers", {"close": True}, JSON_ROUTES),
        # A JSON answer whose body stops half-way: headers sent, then the connection cut.
        (
            "close-during-body",
            {"stream": True, "events": 3, "drop_after": 1, "content_type": "application/json"},
            ANSWER_ROUTES,
        ),
        ("close-during-stream", {"events": 4, "drop_after": 2}, STREAM_ROUTES),
        ("close-mid-event", {"events": 4, "partial_after": 1}, STREAM_ROUTES),
        ("malformed-json", {"malformed": True}, ANSWER_ROUTES),
        (
            "html-page",
            {"body": "<html>upstream error</html>", "content_type": "text/html"},
            JSON_ROUTES,
        ),
        # The usual body, but labelled with a type the route does not produce.
        ("json-as-html", {"content_type": "text/html; charset=utf-8"}, JSON_ROUTES),
        ("stream-on-json-route", {"stream": True, "events": 2}, ANSWER_ROUTES),
        (
            "json-on-stream-route",
            {"stream": False, "reply": {"reply": "x", "usage": {}}},
            STREAM_ROUTES,
        ),
        ("header-over-8-kib", {"headers": BIG_HEADER}, JSON_ROUTES),
    ]
    for each in routes
]


@pytest.mark.req("FAULT-4")
@pytest.mark.parametrize(("route", "fields"), FAULT_4_CASES)
def test_fault_4_answer_the_gateway_cannot_relay_gives_502_or_one_error_event(
    alice_session: Session,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
    fields: dict[str, Any],
) -> None:
    token = fake_service.behave(**fields)
    with session_client(alice_session, timeout=NO_HANG) as client:
        response, elapsed = post(client, route, token)
    assert fake_service.requests(token), "the service was not called: the fault was not exercised"
    assert_relay_failure(response, secret)
    assert elapsed < NO_HANG
    if response.status_code == 502 and "header" in str(fields):
        assert "aaaaaaaa" not in response.text
        assert "x-big" not in response.headers
