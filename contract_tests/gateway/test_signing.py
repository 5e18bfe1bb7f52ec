"""SEC-7: a gateway in hmac mode signs every upstream request and never sends the secret.

The gateway talks to a fake service that checks no secret (the session's fake does,
and in hmac mode the secret must not arrive), and the test recomputes each
signature from what the fake recorded, with its own signer written from SEC-7.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator

import httpx
import pytest

from harness.client import Session, parse_stream
from harness.fakes import FakeControl, Record, header_values
from harness.spec import ProxiedRoute, route
from harness.system import Fake, Harness, Running, User

from .conftest import route_params, user_id

#: How far the signed timestamp may be from the test's clock (same host, same clock).
CLOCK_SLACK = 5
CHAT = route("chat")


def signature(key: str, method: str, path: str, timestamp: str, user: str, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of the SEC-7 string, keyed with ``key``."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{timestamp}\n{user}\n{digest}".encode()
    return "v1=" + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def open_fake(harness: Harness) -> Fake:
    """A fake service started without ``--secret``: it answers whatever the gateway sends."""
    return harness.start_fake_service(check_secret=False)


@pytest.fixture(scope="module")
def hmac_gateway(harness: Harness, open_fake: Fake, users: list[User]) -> Iterator[Running]:
    running = harness.start_gateway(open_fake.url, users, auth_mode="hmac")
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture(scope="module")
def hmac_session(hmac_gateway: Running, alice: User) -> Session:
    return Session.of(hmac_gateway.url, alice)


@pytest.fixture
def fake(open_fake: Fake) -> FakeControl:
    open_fake.control.reset()
    return open_fake.control


@pytest.fixture
def client(hmac_session: Session) -> Iterator[httpx.Client]:
    with hmac_session.client() as client:
        yield client


def assert_signed(record: Record, secret: str, user: str, sent_at: float) -> None:
    """The recorded request carries a valid SEC-7 signature and nothing of the secret."""
    body = record["body"].encode("utf-8")
    assert len(body) == record["body_size"], "the test's body must be small UTF-8 to be checked"
    assert header_values(record, "x-internal-secret") == [], "the secret header travelled"
    for name, value in record["headers"]:
        assert secret not in value, f"the secret travelled in {name}"
    assert secret not in record["body"], "the secret travelled in the body"
    (timestamp,) = header_values(record, "x-internal-timestamp")
    assert timestamp.isdigit(), f"X-Internal-Timestamp {timestamp!r} is not Unix seconds"
    assert abs(int(timestamp) - sent_at) <= CLOCK_SLACK, (
        f"X-Internal-Timestamp {timestamp} is {int(timestamp) - sent_at:+.0f} s from now"
    )
    assert header_values(record, "x-user-id") == [user]
    (got,) = header_values(record, "x-internal-signature")
    expected = signature(secret, record["method"], record["path"], timestamp, user, body)
    assert got == expected, (
        f"{record['method']} {record['path']}: the signature does not match the SEC-7 string"
    )


@pytest.mark.req("SEC-7")
@pytest.mark.parametrize("route", route_params())
def test_sec_7_every_upstream_request_is_signed_without_the_secret(
    client: httpx.Client, fake: FakeControl, secret: str, route: ProxiedRoute
) -> None:
    token = fake.behave(times=1)
    sent_at = time.time()
    response = route.call(client, token)  # small ASCII bodies: the record is the body sent
    assert response.status_code == 200, response.text
    if route.streams:
        events, rest = parse_stream(response.content)
        assert [e.event for e in events][-1] == "done", events
        assert rest == b""
    (record,) = fake.wait_for(lambda records: len(records) == 1, match=token)
    assert record["path"] == route.upstream
    assert_signed(record, secret, str(user_id(client)), sent_at)


@pytest.mark.req("SEC-7")
def test_sec_7_a_clients_own_signature_headers_are_replaced(
    client: httpx.Client, fake: FakeControl, secret: str
) -> None:
    token = fake.behave(times=1)
    sent_at = time.time()
    forged = {
        "X-Internal-Secret": "let-me-in",
        "X-Internal-Timestamp": "1",
        "X-Internal-Signature": "v1=" + "0" * 64,
    }
    response = CHAT.call(client, token, headers=forged)
    assert response.status_code == 200, response.text
    (record,) = fake.wait_for(lambda records: len(records) == 1, match=token)
    assert "let-me-in" not in repr(record["headers"])
    assert_signed(record, secret, str(user_id(client)), sent_at)
