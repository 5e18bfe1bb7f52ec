"""GW-LEGACY-1: the optional legacy routes are off by default and, on, keep every rule.

The legacy routes (``x-optional`` in spec/gateway.openapi.yaml) are the seed's
old sync views. A gateway started with ``legacy_views=1`` that still answers
them 404 does not offer them: its tests are skipped with that reason, since
the routes are optional. When offered they share the async routes' limits
(the chat rate bucket, the user's stream slots) and header rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from contract_tests.gateway.conftest import (
    RawRequest,
    assert_full_stream,
    assert_not_contacted,
    assert_refused_429,
    one_request,
    only_value,
    poll_stream_until_accepted,
    problem,
    user_id,
)
from harness.client import Session
from harness.fakes import FakeControl, header_values
from harness.spec import ProxiedRoute, route
from harness.system import Fake, Harness, Running, User

LEGACY_CHAT = route("legacy_chat")
LEGACY_STREAM = route("legacy_chat_stream")
LEGACY = (LEGACY_CHAT, LEGACY_STREAM)
CHAT = route("chat")
STREAM = route("chat_stream")
SPOOFED_FOR = "203.0.113.66"
CLIENT_IDENTITY = [
    ("X-Internal-Secret", "evil"),
    ("X-User-Id", "999"),
    ("Authorization", "Bearer client-token-4b1d"),
    ("X-Forwarded-For", SPOOFED_FOR),
]


def offered(running: Running, user: User, fake_service: FakeControl) -> Session:
    """A session on ``running``; the test is skipped when the legacy routes are not offered."""
    session = Session.of(running.url, user)
    with session.client() as client:
        response = LEGACY_CHAT.call(client, fake_service.behave())
    if response.status_code == 404:
        pytest.skip("the plug's gateway does not offer the optional legacy routes")
    assert response.status_code == 200, response.text
    return session


@pytest.fixture(scope="module")
def legacy_gateway(
    harness: Harness, fake_service_server: Fake, users: list[User]
) -> Iterator[Running]:
    """Legacy views on, two streams per user, a read timeout held streams outlive."""
    running = harness.start_gateway(
        fake_service_server.url,
        users,
        legacy_views="1",
        max_streams_per_user="2",
        read_timeout="30",
    )
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture
def alice_legacy(
    legacy_gateway: Running, alice: User, fake_service: FakeControl
) -> Iterator[httpx.Client]:
    with offered(legacy_gateway, alice, fake_service).client() as client:
        yield client


# -- off by default -------------------------------------------------------------------------------
@pytest.mark.req("GW-LEGACY-1")
@pytest.mark.parametrize("legacy", LEGACY, ids=str)
def test_gw_legacy_1_legacy_routes_are_not_served_unless_enabled(
    gateway: Running,
    alice_client: httpx.Client,
    fake_service: FakeControl,
    secret: str,
    legacy: ProxiedRoute,
) -> None:
    gateway.require(legacy_views="0")  # the session gateway runs with the legacy routes off
    token = fake_service.behave()
    problem(legacy.call(alice_client, token), 404, secret)
    assert_not_contacted(fake_service, token)


# -- LIMIT-4 on the legacy routes -----------------------------------------------------------------
@pytest.mark.req("GW-LEGACY-1")
def test_gw_legacy_1_legacy_routes_count_in_the_chat_rate_bucket(
    start_gateway: Callable[..., Running],
    alice: User,
    bob: User,
    fake_service: FakeControl,
    secret: str,
) -> None:
    running = start_gateway(legacy_views="1", chat_rate="4/d")  # the window spans the test
    alice_session = offered(running, alice, fake_service)  # 1 of 4
    with alice_session.client() as client:
        for each in (LEGACY_STREAM, CHAT, STREAM):  # 2, 3, 4 of 4, shared with the async routes
            response = each.call(client, fake_service.behave())
            assert response.status_code == 200, f"{each}: {response.text}"
        for each in (*LEGACY, CHAT):
            over = fake_service.behave()
            assert assert_refused_429(each.call(client, over), secret) <= 86400
            assert_not_contacted(fake_service, over)
    with Session.of(running.url, bob).client() as bob_client:  # bob has his own counters
        assert LEGACY_CHAT.call(bob_client, fake_service.behave()).status_code == 200


# -- LIMIT-3 on the legacy routes -----------------------------------------------------------------
@pytest.mark.req("GW-LEGACY-1")
def test_gw_legacy_1_legacy_streams_hold_the_users_stream_slots(
    legacy_gateway: Running,
    alice_legacy: httpx.Client,
    bob: User,
    fake_service: FakeControl,
    secret: str,
) -> None:
    holder = fake_service.behave(events=2, hold_after=1)
    held = [
        alice_legacy.send(LEGACY_STREAM.build(alice_legacy, f"{holder} #{n}"), stream=True)
        for n in range(2)
    ]
    try:
        assert [response.status_code for response in held] == [200, 200]
        fake_service.wait_for(lambda records: len(records) == 2, match=holder)
        for third in (LEGACY_STREAM, STREAM):  # the slots are the user's, on either route
            token = fake_service.behave()
            assert_refused_429(third.call(alice_legacy, token), secret)
            assert_not_contacted(fake_service, token)
        with Session.of(legacy_gateway.url, bob).client() as bob_client:
            assert_full_stream(LEGACY_STREAM.call(bob_client, fake_service.behave()))
        fake_service.release(holder, count=2)
        for response in held:
            response.read()
            assert_full_stream(response)
    finally:
        for response in held:
            response.close()
    assert_full_stream(LEGACY_STREAM.call(alice_legacy, fake_service.behave()))


@pytest.mark.req("GW-LEGACY-1")
def test_gw_legacy_1_a_legacy_stream_whose_client_leaves_frees_its_slot(
    legacy_gateway: Running,
    alice_legacy: httpx.Client,
    alice: User,
    fake_service: FakeControl,
    secret: str,
) -> None:
    session = Session.of(legacy_gateway.url, alice)
    holder = fake_service.behave(events=3, hold_after=1)  # never released
    body = json.dumps({"message": f"hello {holder}"}).encode()
    with (
        RawRequest.to_gateway(session, LEGACY_STREAM.path, body) as first,
        RawRequest.to_gateway(session, LEGACY_STREAM.path, body) as second,
    ):
        for browser in (first, second):
            assert browser.read_events(1)[0].event == "token"
        assert_refused_429(LEGACY_STREAM.call(alice_legacy, fake_service.behave()), secret)
        first.abort()
        # The slot comes back once the gateway notices.
        poll_stream_until_accepted(
            alice_legacy, LEGACY_STREAM, fake_service.behave(), secret=secret
        )
        second.abort()


# -- SEC-4 and GW-PROXY-3/4 on the legacy routes --------------------------------------------------
@pytest.mark.req("GW-LEGACY-1")
@pytest.mark.parametrize("legacy", LEGACY, ids=str)
def test_gw_legacy_1_legacy_routes_send_only_the_gateways_identity_headers(
    alice_legacy: httpx.Client, fake_service: FakeControl, secret: str, legacy: ProxiedRoute
) -> None:
    token = fake_service.behave(times=1)
    response = legacy.call(alice_legacy, token, headers=CLIENT_IDENTITY)
    assert response.status_code == 200, response.text
    record = one_request(fake_service, token)
    assert only_value(record, "x-internal-secret") == secret
    assert only_value(record, "x-user-id") == str(user_id(alice_legacy))
    assert only_value(record, "x-forwarded-for") == "127.0.0.1"  # not the client's claim
    names = [name for name, _ in record["headers"]]
    for name in ("cookie", "authorization", "x-csrftoken"):
        assert name not in names, f"{name} reached the service"
    values = " ".join(value for _, value in record["headers"])
    for spoofed in ("evil", "999", "client-token-4b1d", SPOOFED_FOR):
        assert spoofed not in values, f"client-supplied {spoofed!r} reached the service"


@pytest.mark.req("GW-LEGACY-1")
@pytest.mark.parametrize("legacy", LEGACY, ids=str)
def test_gw_legacy_1_service_cookies_and_secret_stay_behind_the_legacy_routes(
    alice_legacy: httpx.Client, fake_service: FakeControl, secret: str, legacy: ProxiedRoute
) -> None:
    echo = [["Set-Cookie", "svc=legacy-cookie; Path=/"], ["X-Internal-Secret", secret]]
    reply = {
        "reply": "fine",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    token = fake_service.behave(headers=echo, **({} if legacy.streams else {"reply": reply}))
    response = legacy.call(alice_legacy, token)
    assert response.status_code == 200, response.text
    assert "x-internal-secret" not in response.headers
    assert secret not in response.text
    for value in response.headers.get_list("set-cookie"):
        assert "legacy-cookie" not in value, f"the service's cookie reached the client: {value}"
    if legacy.streams:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "no-cache" in response.headers.get("cache-control", "")
        assert response.headers.get("x-accel-buffering") == "no"
    later = fake_service.behave(times=1)
    assert LEGACY_CHAT.call(alice_legacy, later).status_code == 200
    assert header_values(one_request(fake_service, later), "cookie") == []
