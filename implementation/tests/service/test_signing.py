"""Signed requests at the service (SEC-8): core/signing.py and SignedRequestMiddleware."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI

from fastapi_service.core import signing
from fastapi_service.core.middleware import (
    InternalSecretMiddleware,
    SignedRequestMiddleware,
    install_auth,
)
from fastapi_service.main import create_app

from .helpers import LLM_URL, PREVIOUS, SECRET, call_raw, completion, make_settings

NOW = 1_800_000_000
LIMIT = 1024
PATH = "/chatbot/"


def reference_signature(
    secret: str, method: str, path: str, ts: str, user: str, body: bytes
) -> bytes:
    """SEC-7's definition, spelled out independently of core/signing.py."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{ts}\n{user}\n{digest}".encode()
    return b"v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode()


def signed_headers(
    body: bytes,
    *,
    secret: str = SECRET,
    method: str = "POST",
    path: str = PATH,
    ts: int | str = NOW,
    user: str = "7",
) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"x-user-id", user.encode()),
        (b"x-internal-timestamp", str(ts).encode()),
        (
            b"x-internal-signature",
            reference_signature(secret, method, path, str(ts), user, body),
        ),
    ]


def signed_scope(body: bytes) -> dict[str, Any]:
    """The ASGI scope of a POST to PATH signed for ``body``."""
    return {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": signed_headers(body),
    }


class Echo:
    """An inner app that answers 200 with the body it read, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


class Never:
    """An inner app that must never be reached."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pytest.fail("the app behind the middleware was called")


def closed_gate() -> SignedRequestMiddleware:
    return gate(Never())


def gate(inner: Any = None, *, clock: float = NOW) -> SignedRequestMiddleware:
    return SignedRequestMiddleware(
        inner or Echo(),
        secrets=(SECRET.encode(), PREVIOUS.encode()),
        limits={PATH: LIMIT},
        default=64,
        clock=lambda: clock,
    )


def problem_of(raw: Any, status: int) -> dict[str, Any]:
    assert raw.status == status, raw.body
    assert raw.header(b"content-type") == b"application/problem+json"
    body = raw.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    text = raw.body.decode()
    assert SECRET not in text
    assert PREVIOUS not in text
    assert "v1=" not in text, "a signature is echoed"
    return body


# -- core/signing.py ---------------------------------------------------------------------------
def test_signature_matches_the_spec_definition() -> None:
    body = b'{"message":"hi"}'
    digest = hashlib.sha256(body).hexdigest().encode()
    message = signing.string_to_sign(b"POST", b"/quiz/", b"123", b"42", digest)
    assert message == b"POST\n/quiz/\n123\n42\n" + digest
    assert signing.sign(SECRET.encode(), message) == reference_signature(
        SECRET, "POST", "/quiz/", "123", "42", body
    )


def test_verify_accepts_any_listed_secret_only() -> None:
    message = b"POST\n/\n1\n\n" + hashlib.sha256(b"").hexdigest().encode()
    good = signing.sign(PREVIOUS.encode(), message)
    assert signing.verify(good, message, (SECRET.encode(), PREVIOUS.encode()))
    assert not signing.verify(good, message, (SECRET.encode(),))
    assert not signing.verify(good, message + b"x", (PREVIOUS.encode(),))


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (b"0", 0),
        (b"1800000000", 1800000000),
        (b"-5", None),
        (b"1.5", None),
        (b"", None),
        (b" 12", None),
        (b"1" * 13, None),
        ("١٢".encode(), None),
    ],
)
def test_parse_timestamp(value: bytes, parsed: int | None) -> None:
    assert signing.parse_timestamp(value) == parsed


def test_well_formed_signature() -> None:
    assert signing.is_well_formed(b"v1=" + b"a" * 64)
    for bad in (b"a" * 64, b"v1=" + b"A" * 64, b"v1=" + b"a" * 63, b"v2=" + b"a" * 64, b""):
        assert not signing.is_well_formed(bad)


# -- the middleware ----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_signed_request_reaches_the_app_with_its_body() -> None:
    inner = Echo()
    body = b'{"message":"hello"}'
    raw = await call_raw(gate(inner), "POST", PATH, signed_headers(body), body=body)
    assert raw.status == 200
    assert raw.body == body, "the app did not get the body replayed byte for byte"
    assert inner.calls == 1


@pytest.mark.asyncio
async def test_the_previous_secret_is_accepted_too() -> None:
    body = b"{}"
    raw = await call_raw(gate(), "POST", PATH, signed_headers(body, secret=PREVIOUS), body=body)
    assert raw.status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("skew", [-60, 60])
async def test_a_timestamp_60_s_away_is_accepted(skew: int) -> None:
    body = b"{}"
    raw = await call_raw(gate(), "POST", PATH, signed_headers(body, ts=NOW + skew), body=body)
    assert raw.status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "drop",
    [
        {b"x-internal-signature"},
        {b"x-internal-timestamp"},
        {b"x-internal-signature", b"x-internal-timestamp"},
    ],
    ids=["no-signature", "no-timestamp", "neither"],
)
async def test_a_missing_signature_or_timestamp_is_401_unread(drop: set[bytes]) -> None:
    headers = [(k, v) for k, v in signed_headers(b"{}") if k not in drop]
    raw = await call_raw(gate(), "POST", PATH, headers, body=None)
    problem_of(raw, 401)


@pytest.mark.asyncio
async def test_the_secret_alone_is_not_enough() -> None:
    headers = [(b"x-internal-secret", SECRET.encode()), (b"x-user-id", b"7")]
    raw = await call_raw(gate(), "POST", PATH, headers, body=None)
    assert "X-Internal-Secret" in problem_of(raw, 401)["detail"]


@pytest.mark.asyncio
async def test_empty_signature_headers_count_as_missing() -> None:
    headers = [(b"x-internal-timestamp", b""), (b"x-internal-signature", b" ")]
    raw = await call_raw(gate(), "POST", PATH, headers, body=None)
    problem_of(raw, 401)


@pytest.mark.asyncio
@pytest.mark.parametrize("ts", [NOW - 61, NOW + 61, 0, "abc", "-1", f"{NOW}.0", f" {NOW}"], ids=str)
async def test_a_stale_future_or_malformed_timestamp_is_403_unread(ts: int | str) -> None:
    headers = signed_headers(b"{}", ts=ts)
    raw = await call_raw(gate(), "POST", PATH, headers, body=None)
    problem_of(raw, 403)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", [b"x-internal-signature", b"x-internal-timestamp", b"x-user-id"])
async def test_a_repeated_signed_header_is_403(name: bytes) -> None:
    headers = signed_headers(b"{}")
    headers.append(next((k, v) for k, v in headers if k == name))
    raw = await call_raw(gate(), "POST", PATH, headers, body=None)
    problem_of(raw, 403)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "signature",
    [b"v1=" + b"0" * 64, b"v1=" + b"A" * 64, b"v1=zz", b"deadbeef", "v1=é".encode()],
    ids=["zeros", "upper", "short", "no-scheme", "non-ascii"],
)
async def test_a_wrong_or_malformed_signature_is_403(signature: bytes) -> None:
    headers = [(k, v) for k, v in signed_headers(b"{}") if k != b"x-internal-signature"]
    headers.append((b"x-internal-signature", signature))
    raw = await call_raw(closed_gate(), "POST", PATH, headers, body=b"{}")
    problem_of(raw, 403)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("signed", "sent"),
    [
        ({"secret": "another-secret"}, {}),
        ({}, {"body": b'{"message":"hellO"}'}),
        ({"user": "7"}, {"user": "8"}),
        ({"path": "/quiz/"}, {}),
        ({"method": "PUT"}, {}),
        ({"ts": NOW - 1}, {}),
    ],
    ids=["other-key", "body", "user", "path", "method", "timestamp"],
)
async def test_a_signature_over_anything_else_is_403(
    signed: dict[str, Any], sent: dict[str, Any]
) -> None:
    body = b'{"message":"hello"}'
    headers = signed_headers(body, **signed)
    if "user" in sent:
        headers = [(k, sent["user"].encode() if k == b"x-user-id" else v) for k, v in headers]
    if "ts" in signed:
        headers = [
            (k, str(NOW).encode() if k == b"x-internal-timestamp" else v) for k, v in headers
        ]
    raw = await call_raw(closed_gate(), "POST", PATH, headers, body=sent.get("body", body))
    problem_of(raw, 403)


@pytest.mark.asyncio
async def test_a_query_string_is_refused_as_unsigned() -> None:
    async def with_query(scope: Any, receive: Any, send: Any) -> None:
        await gate()({**scope, "query_string": b"a=1"}, receive, send)

    raw = await call_raw(with_query, "POST", PATH, signed_headers(b"{}"), body=None)
    problem_of(raw, 403)


@pytest.mark.asyncio
async def test_without_a_user_id_the_empty_string_is_signed() -> None:
    body = b"{}"
    headers = [(k, v) for k, v in signed_headers(body, user="") if k != b"x-user-id"]
    raw = await call_raw(gate(), "POST", PATH, headers, body=body)
    assert raw.status == 200


@pytest.mark.asyncio
async def test_a_declared_oversized_body_is_413_unread() -> None:
    body = b"x" * (LIMIT + 1)
    headers = [*signed_headers(body), (b"content-length", str(len(body)).encode())]
    raw = await call_raw(gate(), "POST", PATH, headers, body=None)
    problem_of(raw, 413)


@pytest.mark.asyncio
async def test_a_growing_body_is_cut_at_the_limit() -> None:
    body = b"x" * (LIMIT + 1)
    chunks = [body[i : i + 100] for i in range(0, len(body), 100)]
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        assert received <= len(chunks), "read past the end"
        more = received < len(chunks)
        return {"type": "http.request", "body": chunks[received - 1], "more_body": more}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = signed_scope(body)
    await gate()(scope, receive, send)
    assert sent[0]["status"] == 413
    assert received == LIMIT // 100 + 1, "the body was read past the limit"


@pytest.mark.asyncio
async def test_a_client_gone_while_sending_gets_no_answer() -> None:
    sent: list[dict[str, Any]] = []
    messages = iter(
        [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = signed_scope(b"{}")
    await closed_gate()(scope, receive, send)
    assert sent == []


@pytest.mark.asyncio
async def test_after_the_body_the_app_hears_the_client_again() -> None:
    """Disconnect detection (streams) needs receive() to reach the client after the replay."""
    heard: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        heard.append((await receive())["type"])
        heard.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    messages = iter(
        [{"type": "http.request", "body": b"{}", "more_body": False}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = signed_scope(b"{}")
    await gate(app)(scope, receive, send)
    assert heard == ["http.request", "http.disconnect"]


@pytest.mark.asyncio
async def test_health_and_lifespan_pass_unsigned() -> None:
    raw = await call_raw(gate(), "GET", "/health", [], body=b"")
    assert raw.status == 200
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await gate(inner)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def test_the_middleware_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        SignedRequestMiddleware(Echo(), secrets=(), limits={}, default=1)
    with pytest.raises(ValueError, match="secret"):
        SignedRequestMiddleware(Echo(), secrets=(b"",), limits={}, default=1)


# -- wiring ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "expected"),
    [("secret", InternalSecretMiddleware), ("hmac", SignedRequestMiddleware)],
)
def test_install_auth_picks_the_gate_of_the_mode(mode: str, expected: type) -> None:
    app = FastAPI()
    install_auth(app, make_settings(auth_mode=mode), body_limits={}, default_body_limit=10)
    assert [m.cls for m in app.user_middleware] == [expected]


@pytest.mark.asyncio
async def test_the_service_in_hmac_mode_answers_signed_requests_only(
    llm: respx.MockRouter,
) -> None:
    app = create_app(make_settings(auth_mode="hmac"))
    llm.post(LLM_URL).mock(return_value=httpx.Response(200, json=completion("hi there")))
    body = json.dumps({"message": "hello"}).encode()
    ts = int(time.time())
    headers = {k.decode(): v.decode() for k, v in signed_headers(body, ts=ts)}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service.test"
        ) as http,
    ):
        signed = await http.post(PATH, content=body, headers=headers)
        secret_only = await http.post(
            PATH, content=body, headers={"X-Internal-Secret": SECRET, "X-User-Id": "7"}
        )
        health = await http.get("/health")
    assert signed.status_code == 200, signed.text
    assert signed.json()["reply"] == "hi there"
    assert secret_only.status_code == 401
    assert health.status_code == 200
