"""GW-PROXY-7, GW-PROXY-8, PROB-1, PROB-2: how the gateway maps failures, before and mid-stream."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from contract_tests.gateway.conftest import (
    MIB,
    LogWatch,
    anonymous,
    assert_not_contacted,
    blackhole,
    problem,
    route_params,
)
from harness.client import (
    assert_no_leak,
    assert_problem_document,
    http_client,
    logged_in,
    parse_stream,
)
from harness.fakes import FakeControl
from harness.processes import LOOPBACK, free_port
from harness.spec import ProxiedRoute, proxied_routes, route
from harness.system import Harness, Running, User

#: Every failure must be answered well within this bound (read_timeout is 3 s).
NEVER_HANGS = 10.0
SLOW = httpx.Timeout(NEVER_HANGS + 5.0)

INTERNAL = "internal-detail-xyz"

CHAT = route("chat")
STREAM = route("chat_stream")
QUIZ = route("quiz_generate")
#: The routes with a JSON body.
JSON_ROUTES = proxied_routes(uploads=False)


# -- GW-PROXY-7: the service cannot be reached or does not answer -----------------------------
@dataclass(frozen=True)
class DeadService:
    """A gateway whose service URL points at a loopback port nothing serves."""

    gateway: Running
    port: int


@pytest.fixture(scope="module")
def dead_service(harness: Harness, users: list[User]) -> Iterator[DeadService]:
    # One gateway for both tests: first nothing listens on the port (connection
    # refused), then a test puts a never-accepting listener there (connect timeout).
    port = free_port()
    running = harness.start_gateway(f"http://{LOOPBACK}:{port}", users, connect_timeout="1")
    try:
        yield DeadService(running, port)
    finally:
        running.process.stop()


@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize("route", route_params())
def test_gw_proxy_7_unreachable_service_gives_502(
    dead_service: DeadService, alice: User, secret: str, route: ProxiedRoute
) -> None:
    with logged_in(dead_service.gateway.url, alice) as client:
        started = time.monotonic()
        problem(route.call(client, "unreachable"), 502, secret)
        assert time.monotonic() - started < NEVER_HANGS


@pytest.mark.req("GW-PROXY-7")
def test_gw_proxy_7_connect_timeout_gives_504(
    dead_service: DeadService, alice: User, secret: str
) -> None:
    with blackhole(dead_service.port), logged_in(dead_service.gateway.url, alice) as client:
        for route in (CHAT, STREAM):
            started = time.monotonic()
            problem(route.call(client, "blackhole"), 504, secret)
            assert time.monotonic() - started < NEVER_HANGS


@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize("route", route_params((CHAT, STREAM)))
def test_gw_proxy_7_read_timeout_gives_504(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    token = fake_service.behave(hang=True)
    started = time.monotonic()
    response = route.call(alice_client, token)
    elapsed = time.monotonic() - started
    problem(response, 504, secret)
    assert elapsed < NEVER_HANGS, f"the gateway took {elapsed:.1f}s to give up"
    # The gateway gave up on the upstream request instead of leaving it open.
    fake_service.wait_for(lambda records: records[0]["aborted"], match=token)


@pytest.mark.req("GW-PROXY-7")
def test_gw_proxy_7_exhausted_pool_gives_503_with_retry_after(
    tight_gateway: Running, alice: User, fake_service: FakeControl, secret: str
) -> None:
    # tight_gateway: max_connections 2, pool_timeout 1 s, read_timeout 10 s.
    token = fake_service.behave(events=3, hold_after=1)
    with logged_in(tight_gateway.url, alice) as client:
        held = []
        try:
            for n in range(2):
                request = STREAM.build(client, f"{token} #{n}")
                held.append(client.send(request, stream=True))
                assert held[-1].status_code == 200
            fake_service.wait_for(lambda records: len(records) == 2, match=token)

            started = time.monotonic()
            refused = CHAT.call(client, "third")
            elapsed = time.monotonic() - started
            problem(refused, 503, secret)
            retry_after = refused.headers.get("retry-after", "")
            assert retry_after.isdigit(), f"Retry-After is {retry_after!r}"
            assert elapsed < NEVER_HANGS

            fake_service.release(token, count=2)
            for response in held:
                events, rest = parse_stream(response.read())
                assert [e.event for e in events] == ["token"] * 3 + ["done"]
                assert rest == b""
        finally:
            for response in held:
                response.close()
        # The slots came back: the pool works again.
        again = CHAT.call(client, "after")
        assert again.status_code == 200, again.text


# -- GW-PROXY-7: the service answers with an error ---------------------------------------------
@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("route", route_params())
def test_gw_proxy_7_service_5xx_gives_502_without_its_details(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
    status: int,
) -> None:
    body = {
        "type": "https://errors.example/internal",
        "title": "Internal",
        "status": status,
        "detail": f"{INTERNAL}: database at 10.0.0.7 refused",
    }
    token = fake_service.behave(status=status, body=body)
    response = route.call(alice_client, token)
    problem(response, 502, secret)
    assert INTERNAL not in response.text
    assert "10.0.0.7" not in response.text
    assert "errors.example" not in response.text


@pytest.mark.req("GW-PROXY-7")
def test_gw_proxy_7_service_5xx_text_body_gives_502_without_it(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    token = fake_service.behave(status=500, body=f"{INTERNAL}\nTraceback (most recent call last):")
    response = CHAT.call(alice_client, token)
    problem(response, 502, secret)
    assert INTERNAL not in response.text


#: Service 4xx answers to relay: 422 from every proxied route, what only an upload
#: provokes from every upload route, and other statuses from the chat route.
RELAYED_4XX = [
    *((each, 422) for each in proxied_routes()),
    *((each, status) for each in proxied_routes(uploads=True) for status in (415, 413)),
    (CHAT, 400),
    (CHAT, 404),
]


@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize(
    ("route", "status"),
    [pytest.param(each, status, id=f"{each}-{status}") for each, status in RELAYED_4XX],
)
def test_gw_proxy_7_service_4xx_is_relayed_with_status_and_problem_body(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
    status: int,
) -> None:
    body = {
        "type": "https://errors.lamla.dev/validation",
        "title": "Unprocessable relayed problem",
        "status": status,
        "detail": f"distinctive detail {status} 51c2",
        "errors": [{"loc": ["body", "message"], "msg": "too odd"}],
    }
    token = fake_service.behave(status=status, body=body)
    response = route.call(alice_client, token)
    relayed = problem(response, status, secret)
    for key, value in body.items():
        assert relayed.get(key) == value, f"relayed problem lost {key}: {relayed}"


@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize("status", [401, 403])
def test_gw_proxy_7_service_refusing_the_secret_gives_502_and_a_log_line(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    gateway: Running,
    secret: str,
    status: int,
) -> None:
    log = LogWatch(gateway.log)
    token = fake_service.behave(status=status)
    response = CHAT.call(alice_client, token)
    body = problem(response, 502, secret)
    assert body["status"] == 502
    line = log.wait_for(lambda text: "secret" in text.lower())
    assert secret not in line


@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize("route", route_params(proxied_routes(streams=False)))
def test_gw_proxy_7_malformed_service_reply_gives_502(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    token = fake_service.behave(malformed=True)
    problem(route.call(alice_client, token), 502, secret)


# -- GW-PROXY-7: the client's request is wrong --------------------------------------------------
@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"message": "unterminated', id="truncated"),
        pytest.param(b"not json at all", id="text"),
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(b'"a string"', id="string"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"message": "\xff\xfe"}', id="not-utf8"),
    ],
)
@pytest.mark.parametrize("route", route_params(JSON_ROUTES))
def test_gw_proxy_7_invalid_json_gives_400(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
    raw: bytes,
) -> None:
    response = alice_client.post(
        route.path, content=raw, headers={"Content-Type": "application/json"}
    )
    problem(response, 400, secret)
    assert_not_contacted(fake_service)


@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize("route", route_params(JSON_ROUTES))
def test_gw_proxy_7_json_body_over_1_mib_gives_413(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    raw = json.dumps({"message": "x" * (MIB + 16)}).encode()
    response = alice_client.post(
        route.path, content=raw, headers={"Content-Type": "application/json"}
    )
    problem(response, 413, secret)
    assert_not_contacted(fake_service)


@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        *(("GET", each.path) for each in proxied_routes()),
        ("PUT", CHAT.path),
        ("DELETE", CHAT.path),
        ("PATCH", QUIZ.path),
    ],
)
def test_gw_proxy_7_wrong_method_gives_405(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, method: str, path: str
) -> None:
    content = b'{"message": "wrong method"}' if method != "GET" else None
    headers = {"Content-Type": "application/json"} if content else None
    response = alice_client.request(method, path, content=content, headers=headers)
    problem(response, 405, secret)
    assert_not_contacted(fake_service)


def wrong_content_types() -> list[Any]:
    """A valid body under a content type its route does not take: a JSON route's body as
    text, an upload's fields as JSON, and a form on the chat route."""
    cases = []
    for each in proxied_routes():
        if each.uploads:
            raw = json.dumps(each.example.instance("hi")).encode()
            cases.append(pytest.param(each, "application/json", raw, id=f"{each}-json"))
        else:
            raw, _ = each.encode("hi")
            cases.append(pytest.param(each, "text/plain", raw, id=f"{each}-text"))
    form = "application/x-www-form-urlencoded"
    return [*cases, pytest.param(CHAT, form, b"message=hi", id="chat-form")]


@pytest.mark.req("GW-PROXY-7")
@pytest.mark.parametrize(("route", "content_type", "raw"), wrong_content_types())
def test_gw_proxy_7_wrong_content_type_gives_415(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    route: ProxiedRoute,
    content_type: str,
    raw: bytes,
) -> None:
    response = alice_client.post(route.path, content=raw, headers={"Content-Type": content_type})
    problem(response, 415, secret)
    assert_not_contacted(fake_service)


# -- GW-PROXY-8: failures in the middle of a stream ---------------------------------------------
def read_stream(client: httpx.Client, token: str) -> tuple[list, bytes, float]:
    started = time.monotonic()
    response = client.post(STREAM.path, json={"message": f"mid {token}"}, timeout=SLOW)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events, rest = parse_stream(response.content)
    return events, rest, elapsed


def assert_error_event(event: Any, secret: str) -> None:
    assert event.event == "error"
    assert event.raw.startswith(b"event: error"), event.raw
    data = event.json()
    for key in ("type", "title", "status", "detail"):
        assert key in data, f"error event data lacks {key}: {data}"
    assert isinstance(data["status"], int)
    assert data["status"] >= 500, data
    assert secret not in event.data


@pytest.mark.req("GW-PROXY-8")
@pytest.mark.parametrize(
    ("fields", "tokens"),
    [
        pytest.param({"drop_after": 2}, 2, id="drop"),
        pytest.param({"partial_after": 2}, 2, id="partial"),
        pytest.param({"error_after": 2}, 2, id="service-error-event"),
        pytest.param({"partial_after": 5}, 5, id="partial-done"),
        pytest.param({"done": False}, 5, id="no-done"),
    ],
)
def test_gw_proxy_8_mid_stream_failure_ends_with_one_error_event_at_a_boundary(
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    fields: dict[str, Any],
    tokens: int,
) -> None:
    token = fake_service.behave(events=5, **fields)
    events, rest, elapsed = read_stream(alice_client, token)
    assert rest == b"", f"the stream ended inside an event: {rest!r}"
    assert [e.event for e in events] == ["token"] * tokens + ["error"], events
    for event in events[:-1]:
        assert isinstance(event.json()["text"], str)
    assert_error_event(events[-1], secret)
    assert elapsed < NEVER_HANGS


@pytest.mark.req("GW-PROXY-8")
def test_gw_proxy_8_service_stalling_mid_stream_ends_with_an_error_event(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    token = fake_service.behave(events=5, hold_after=1)  # never released
    events, rest, elapsed = read_stream(alice_client, token)
    assert rest == b""
    assert [e.event for e in events] == ["token", "error"], events
    assert_error_event(events[-1], secret)
    assert elapsed < NEVER_HANGS, f"the stream took {elapsed:.1f}s to end"
    fake_service.wait_for(lambda records: records[0]["aborted"], match=token)


# -- PROB-1 / PROB-2 ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One way to make the gateway answer with an error."""

    status: int
    send: Callable[[httpx.Client, httpx.Client, FakeControl, User], httpx.Response]


def _login_as(user: User, *, password: str | None = None) -> Callable[..., httpx.Response]:
    def send(anon: httpx.Client, _: httpx.Client, __: FakeControl, ___: User) -> httpx.Response:
        return anon.post(
            "/api/auth/login/",
            json={"username": user.username, "password": password or user.password},
        )

    return send


CASES: dict[str, Case] = {
    "me-anonymous-401": Case(401, lambda anon, *_: anon.get("/api/auth/me/")),
    "chat-anonymous-401": Case(401, lambda anon, *_: CHAT.call(anon, "x")),
    "stream-anonymous-401": Case(401, lambda anon, *_: STREAM.call(anon, "x")),
    "login-wrong-password-401": Case(
        401,
        lambda anon, _, __, user: anon.post(
            "/api/auth/login/", json={"username": user.username, "password": "wrong"}
        ),
    ),
    "login-invalid-json-400": Case(
        400,
        lambda anon, *_: anon.post(
            "/api/auth/login/", content=b"{", headers={"Content-Type": "application/json"}
        ),
    ),
    "login-get-405": Case(405, lambda anon, *_: anon.get("/api/auth/login/")),
    "logout-get-405": Case(405, lambda anon, *_: anon.get("/api/auth/logout/")),
    "chat-wrong-csrf-403": Case(
        403,
        lambda _, user_client, *__: user_client.post(
            CHAT.path, json={"message": "x"}, headers={"X-CSRFToken": "0" * 64}
        ),
    ),
    "unknown-api-path-404": Case(404, lambda _, user_client, *__: user_client.get("/api/nope/")),
    "unknown-path-404": Case(404, lambda anon, *_: anon.get("/no-such-page/")),
    "chat-get-405": Case(405, lambda _, user_client, *__: user_client.get(CHAT.path)),
    "chat-invalid-json-400": Case(
        400,
        lambda _, user_client, *__: user_client.post(
            CHAT.path, content=b"{", headers={"Content-Type": "application/json"}
        ),
    ),
    "chat-text-415": Case(
        415,
        lambda _, user_client, *__: user_client.post(
            CHAT.path, content=b"hi", headers={"Content-Type": "text/plain"}
        ),
    ),
    "chat-too-large-413": Case(
        413,
        lambda _, user_client, *__: user_client.post(CHAT.path, json={"message": "y" * (MIB + 1)}),
    ),
    "service-500-502": Case(
        502,
        lambda _, user_client, fake, __: CHAT.call(user_client, fake.behave(status=500)),
    ),
    "service-422-422": Case(
        422,
        lambda _, user_client, fake, __: QUIZ.call(user_client, fake.behave(status=422)),
    ),
    "service-403-502": Case(
        502,
        lambda _, user_client, fake, __: CHAT.call(user_client, fake.behave(status=403)),
    ),
    "service-malformed-502": Case(
        502,
        lambda _, user_client, fake, __: CHAT.call(user_client, fake.behave(malformed=True)),
    ),
    "stream-service-500-502": Case(
        502,
        lambda _, user_client, fake, __: STREAM.call(user_client, fake.behave(status=500)),
    ),
}


@pytest.mark.req("PROB-1", "PROB-2")
@pytest.mark.parametrize("case", [pytest.param(c, id=name) for name, c in CASES.items()])
def test_prob_1_every_gateway_error_is_a_problem_document(
    gateway: Running,
    alice_client: httpx.Client,
    fake_service: FakeControl,
    alice: User,
    secret: str,
    case: Case,
) -> None:
    with anonymous(gateway.url) as anon:
        response = case.send(anon, alice_client, fake_service, alice)
    body = assert_problem_document(response, case.status)
    assert body["title"], body
    assert_no_leak(response, secret)


@pytest.mark.req("PROB-2")
@pytest.mark.parametrize("route", route_params())
def test_prob_2_service_traces_and_secret_echoes_never_reach_the_client(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    trace = 'Traceback (most recent call last): File "/srv/app.py", line 3'
    token = fake_service.behave(
        status=500,
        body={"type": "about:blank", "title": "boom", "status": 500, "detail": f"{trace} {secret}"},
        headers=[["X-Debug-Trace", trace], ["X-Echo", secret]],
    )
    response = route.call(alice_client, token)
    assert response.status_code == 502, response.text
    assert_no_leak(response, secret)


@pytest.mark.req("PROB-2")
@pytest.mark.parametrize("route", route_params((CHAT, STREAM)))
def test_prob_2_successful_answers_carry_no_trace_or_secret_from_service_headers(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    trace = 'Traceback (most recent call last): File "/srv/app.py", line 3'
    fields: dict[str, Any] = {"headers": [["X-Debug-Trace", trace], ["X-Echo", secret]]}
    if not route.streams:
        fields["reply"] = {"reply": "ok", "usage": {}}
    token = fake_service.behave(**fields)
    response = route.call(alice_client, token)
    assert response.status_code == 200, response.text
    assert_no_leak(response, secret)


@pytest.mark.req("PROB-2")
def test_prob_2_the_health_and_auth_routes_leak_nothing(gateway: Running, secret: str) -> None:
    with http_client(gateway.url) as client:
        for path in ("/api/health/", "/api/auth/csrf/", "/api/auth/me/"):
            assert_no_leak(client.get(path), secret)
