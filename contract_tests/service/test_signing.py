"""SEC-8: a service in hmac mode accepts only requests signed as SEC-7 says.

The signer below is the test's own, written from the text of SEC-7; nothing of the
implementation is imported. One hmac-mode service (with a previous secret, for
rotation) serves the whole module.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets as random_secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from harness.client import assert_no_leak, assert_problem, http_client
from harness.fakes import FakeControl, new_token
from harness.system import Fake, Harness, Running

PREVIOUS = f"previous-{random_secrets.token_urlsafe(16)}"
USER = "17"
WINDOW = 60


def signature(key: str, method: str, path: str, timestamp: str, user_id: str, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 of the SEC-7 string, keyed with ``key``."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{timestamp}\n{user_id}\n{digest}".encode()
    return "v1=" + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signed(
    key: str,
    body: bytes,
    *,
    path: str = "/chatbot/",
    method: str = "POST",
    timestamp: int | None = None,
    user_id: str = USER,
) -> dict[str, str]:
    """The headers the gateway sends in hmac mode for this request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-User-Id": user_id,
        "X-Internal-Timestamp": ts,
        "X-Internal-Signature": signature(key, method, path, ts, user_id, body),
    }


def chat_body(token: str) -> bytes:
    return json.dumps({"message": f"hello {token}"}).encode()


@pytest.fixture(scope="module")
def hmac_service(harness: Harness, fake_llm_server: Fake) -> Iterator[Running]:
    running = harness.start_service(
        fake_llm_server.url + "/v1", auth_mode="hmac", previous_secret=PREVIOUS
    )
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture
def client(hmac_service: Running) -> Iterator[httpx.Client]:
    with http_client(hmac_service.url) as client:
        yield client


def refused(response: httpx.Response, status: int, fake_llm: FakeControl, token: str, secret: str):
    """A problem+json refusal that never reached the LLM and leaks nothing."""
    body = assert_problem(response, status)
    assert_no_leak(response, secret, PREVIOUS)
    assert "v1=" not in response.text, "the refusal echoes a signature"
    assert fake_llm.requests(token) == [], "a refused request reached the LLM"
    return body


@pytest.mark.req("SEC-8")
def test_sec_8_a_signed_request_is_answered(
    client: httpx.Client, fake_llm: FakeControl, secret: str
) -> None:
    token = fake_llm.behave(reply="signed and sealed")
    body = chat_body(token)
    response = client.post("/chatbot/", content=body, headers=signed(secret, body))
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "signed and sealed"
    assert len(fake_llm.requests(token)) == 1


@pytest.mark.req("SEC-8")
def test_sec_8_signed_stream_and_quiz_are_answered(
    client: httpx.Client, fake_llm: FakeControl, secret: str
) -> None:
    token = fake_llm.behave(tokens=3)
    body = chat_body(token)
    headers = signed(secret, body, path="/chatbot/stream/")
    with client.stream("POST", "/chatbot/stream/", content=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        text = response.read().decode()
    assert "event: done" in text, text

    quiz_token = new_token()  # the fake LLM answers a quiz prompt with a valid quiz
    quiz = json.dumps(
        {"topic": f"HTTP {quiz_token}", "num_questions": 1, "difficulty": "easy"}
    ).encode()
    response = client.post("/quiz/", content=quiz, headers=signed(secret, quiz, path="/quiz/"))
    assert response.status_code == 200, response.text
    assert len(response.json()["questions"]) == 1
    assert len(fake_llm.requests(quiz_token)) == 1


@pytest.mark.req("SEC-8")
def test_sec_8_the_previous_secret_signs_too(client: httpx.Client, fake_llm: FakeControl) -> None:
    token = fake_llm.behave(reply="rotated")
    body = chat_body(token)
    response = client.post("/chatbot/", content=body, headers=signed(PREVIOUS, body))
    assert response.status_code == 200, response.text


@pytest.mark.req("SEC-8")
def test_sec_8_a_request_replayed_within_the_window_is_accepted(
    client: httpx.Client, fake_llm: FakeControl, secret: str
) -> None:
    """The window bounds replay; nonces are out of scope (SEC-8)."""
    token = fake_llm.behave(reply="again")
    body = chat_body(token)
    headers = signed(secret, body)
    first = client.post("/chatbot/", content=body, headers=headers)
    second = client.post("/chatbot/", content=body, headers=headers)
    assert (first.status_code, second.status_code) == (200, 200), second.text


@pytest.mark.req("SEC-8")
@pytest.mark.parametrize(
    "drop",
    [
        ("X-Internal-Signature",),
        ("X-Internal-Timestamp",),
        ("X-Internal-Signature", "X-Internal-Timestamp"),
    ],
    ids=["no-signature", "no-timestamp", "neither"],
)
def test_sec_8_a_missing_signature_is_401(
    client: httpx.Client, fake_llm: FakeControl, secret: str, drop: tuple[str, ...]
) -> None:
    token = fake_llm.behave(reply="never")
    body = chat_body(token)
    headers = {k: v for k, v in signed(secret, body).items() if k not in drop}
    refused(client.post("/chatbot/", content=body, headers=headers), 401, fake_llm, token, secret)


@pytest.mark.req("SEC-8")
def test_sec_8_the_secret_alone_is_not_enough(
    client: httpx.Client, fake_llm: FakeControl, secret: str
) -> None:
    """It is a request without a signature: 401, on every protected route."""
    for path in ("/chatbot/", "/chatbot/stream/", "/quiz/", "/openapi.json"):
        token = fake_llm.behave(reply="never")
        body = chat_body(token)
        headers = {
            "Content-Type": "application/json",
            "X-Internal-Secret": secret,
            "X-User-Id": USER,
        }
        method = "GET" if path == "/openapi.json" else "POST"
        response = client.request(method, path, content=body, headers=headers)
        refused(response, 401, fake_llm, token, secret)


@pytest.mark.req("SEC-8")
def test_sec_8_health_stays_open(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.req("SEC-8")
@pytest.mark.parametrize(
    "forge",
    ["another-key", "zeros", "garbage", "previous-scheme"],
)
def test_sec_8_a_wrong_signature_is_403(
    client: httpx.Client, fake_llm: FakeControl, secret: str, forge: str
) -> None:
    token = fake_llm.behave(reply="never")
    body = chat_body(token)
    headers = signed(secret, body)
    good = headers["X-Internal-Signature"]
    headers["X-Internal-Signature"] = {
        "another-key": signature(
            "not-the-secret", "POST", "/chatbot/", headers["X-Internal-Timestamp"], USER, body
        ),
        "zeros": "v1=" + "0" * 64,
        "garbage": "this is not a signature",
        "previous-scheme": "v0=" + good[3:],
    }[forge]
    refused(client.post("/chatbot/", content=body, headers=headers), 403, fake_llm, token, secret)


@pytest.mark.req("SEC-8")
@pytest.mark.parametrize("part", ["body", "user", "path", "method", "timestamp"])
def test_sec_8_a_signature_of_another_request_is_403(
    client: httpx.Client, fake_llm: FakeControl, secret: str, part: str
) -> None:
    """Every part of the signed string is bound: change one and the signature fails."""
    token = fake_llm.behave(reply="never")
    body = chat_body(token)
    now = int(time.time())
    headers = signed(secret, body, timestamp=now)
    sent = body
    if part == "body":
        sent = chat_body(token + "!")  # the same token: a leak to the LLM would be seen
    elif part == "user":
        headers["X-User-Id"] = "18"
    elif part == "path":
        headers = signed(secret, body, path="/quiz/", timestamp=now)
    elif part == "method":
        headers = signed(secret, body, method="PUT", timestamp=now)
    else:
        headers["X-Internal-Timestamp"] = str(now - 1)
    response = client.post("/chatbot/", content=sent, headers=headers)
    refused(response, 403, fake_llm, token, secret)


@pytest.mark.req("SEC-8")
@pytest.mark.parametrize("skew", [-(WINDOW + 2), WINDOW + 2, -3600, 3600])
def test_sec_8_a_timestamp_more_than_60_s_away_is_403(
    client: httpx.Client, fake_llm: FakeControl, secret: str, skew: int
) -> None:
    """Correctly signed, but stale (a replay) or from the future."""
    token = fake_llm.behave(reply="never")
    body = chat_body(token)
    headers = signed(secret, body, timestamp=int(time.time()) + skew)
    refused(client.post("/chatbot/", content=body, headers=headers), 403, fake_llm, token, secret)


@pytest.mark.req("SEC-8")
@pytest.mark.parametrize("skew", [-(WINDOW - 5), WINDOW - 5])
def test_sec_8_a_timestamp_within_60_s_is_accepted(
    client: httpx.Client, fake_llm: FakeControl, secret: str, skew: int
) -> None:
    token = fake_llm.behave(reply="in time")
    body = chat_body(token)
    headers = signed(secret, body, timestamp=int(time.time()) + skew)
    response = client.post("/chatbot/", content=body, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.req("SEC-8")
@pytest.mark.parametrize("value", ["soon", "1.5e9", "", "-1"])
def test_sec_8_a_timestamp_that_is_not_unix_seconds_is_refused(
    client: httpx.Client, fake_llm: FakeControl, secret: str, value: str
) -> None:
    token = fake_llm.behave(reply="never")
    body = chat_body(token)
    headers = signed(secret, body)
    headers["X-Internal-Timestamp"] = value
    headers["X-Internal-Signature"] = signature(secret, "POST", "/chatbot/", value, USER, body)
    status = 401 if value == "" else 403  # an empty timestamp is a missing one
    refused(
        client.post("/chatbot/", content=body, headers=headers), status, fake_llm, token, secret
    )
