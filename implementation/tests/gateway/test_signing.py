"""gateway/upstream/signing.py: the gateway signs upstream requests in hmac mode (SEC-7)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from django.conf import settings
from django.test import Client, override_settings

from gateway.asgi.fastpath import FastPath
from gateway.upstream.client import aclose_clients, build_client, get_client
from gateway.upstream.signing import BODY_SHA256, SigningAuth
from lamla.asgi import django_application

from .asgi_driver import Browser, Recorder, call
from .conftest import SECRET
from .test_proxy import REPLY, multipart, read_stream

NOW = 1_800_000_000


def expected_signature(method: str, path: str, ts: str, user: str, body: bytes) -> str:
    """SEC-7's definition, spelled out independently of gateway/upstream/signing.py."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{ts}\n{user}\n{digest}".encode()
    return "v1=" + hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()


def signing_client(seen: list[httpx.Request], response: httpx.Response) -> httpx.AsyncClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        await request.aread()
        seen.append(request)
        return response

    return httpx.AsyncClient(
        base_url="http://127.0.0.1:8001",
        transport=httpx.MockTransport(handler),
        auth=SigningAuth(SECRET, clock=lambda: NOW + 0.9),
    )


@pytest.mark.asyncio
async def test_a_request_is_signed_and_loses_the_secret() -> None:
    seen: list[httpx.Request] = []
    body = b'{"message":"hi"}'
    async with signing_client(seen, httpx.Response(200, json=REPLY)) as client:
        response = await client.post(
            "/chatbot/",
            content=body,
            headers=[
                ("X-Internal-Secret", SECRET),
                ("x-internal-secret", "another copy"),
                ("X-User-Id", "42"),
                ("X-Internal-Timestamp", "1"),
                ("X-Internal-Signature", "v1=forged"),
            ],
        )
    assert response.status_code == 200
    (sent,) = seen
    assert "x-internal-secret" not in sent.headers
    assert all(SECRET not in value for _, value in sent.headers.items())
    assert sent.headers.get_list("x-internal-timestamp") == [str(NOW)]
    assert sent.headers.get_list("x-internal-signature") == [
        expected_signature("POST", "/chatbot/", str(NOW), "42", body)
    ]
    assert sent.content == body


@pytest.mark.asyncio
async def test_without_a_user_id_the_empty_string_is_signed() -> None:
    seen: list[httpx.Request] = []
    async with signing_client(seen, httpx.Response(200)) as client:
        await client.get("/health")
    assert seen[0].headers["x-internal-signature"] == expected_signature(
        "GET", "/health", str(NOW), "", b""
    )


@pytest.mark.asyncio
async def test_a_streamed_body_is_signed_whole_and_sent_unchanged() -> None:
    """The upload path: chunks from a spool with a declared length (gateway/proxy/bodies.py)."""
    chunks = [bytes([i]) * 65536 for i in range(40)]  # 2.5 MiB
    body = b"".join(chunks)

    async def spool() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    seen: list[httpx.Request] = []
    async with signing_client(seen, httpx.Response(200, json=REPLY)) as client:
        request = client.build_request(
            "POST",
            "/chatbot/file/",
            content=spool(),
            headers={"content-length": str(len(body)), "x-user-id": "3"},
        )
        await client.send(request)
    (sent,) = seen
    assert sent.content == body
    assert sent.headers["content-length"] == str(len(body))
    assert sent.headers["x-internal-signature"] == expected_signature(
        "POST", "/chatbot/file/", str(NOW), "3", body
    )


@pytest.mark.asyncio
async def test_a_body_whose_digest_is_given_is_signed_unread() -> None:
    """The upload path hashes while it spools: the signer must not read the spool first."""
    chunks = [bytes([i]) * 65536 for i in range(40)]
    body = b"".join(chunks)
    pulled = 0

    async def spool() -> AsyncIterator[bytes]:
        nonlocal pulled
        for chunk in chunks:
            pulled += 1
            yield chunk

    class Transport(httpx.AsyncBaseTransport):
        # Not httpx.MockTransport: it reads the body before the handler sees it.
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            assert pulled == 0, "the body was read before it was sent"
            await request.aread()
            seen.append(request)
            return httpx.Response(200, json=REPLY)

    seen: list[httpx.Request] = []
    digest = hashlib.sha256(body).hexdigest().encode()
    async with httpx.AsyncClient(
        base_url="http://127.0.0.1:8001",
        transport=Transport(),
        auth=SigningAuth(SECRET, clock=lambda: NOW),
    ) as client:
        request = client.build_request(
            "POST",
            "/chatbot/file/",
            content=spool(),
            headers={"content-length": str(len(body)), "x-user-id": "3"},
            extensions={BODY_SHA256: digest},
        )
        response = await client.send(request)
    assert response.status_code == 200
    (sent,) = seen
    assert sent.content == body
    assert sent.headers["x-internal-signature"] == expected_signature(
        "POST", "/chatbot/file/", str(NOW), "3", body
    )


@pytest.mark.asyncio
async def test_a_streamed_response_is_not_read_by_the_auth() -> None:
    """requires_response_body stays off: send(stream=True) returns at the headers."""
    go_on = asyncio.Event()

    async def events() -> AsyncIterator[bytes]:
        yield b"event: token\ndata: {}\n\n"
        await go_on.wait()
        yield b"event: done\ndata: {}\n\n"

    seen: list[httpx.Request] = []
    response = httpx.Response(200, content=events(), headers={"content-type": "text/event-stream"})
    async with signing_client(seen, response) as client:
        upstream = await asyncio.wait_for(
            client.send(client.build_request("POST", "/chatbot/stream/", json={}), stream=True),
            timeout=2.0,
        )
        try:
            first = await asyncio.wait_for(anext(upstream.aiter_raw()), timeout=2.0)
            assert first.startswith(b"event: token")
        finally:
            go_on.set()
            await upstream.aclose()


def test_the_auth_never_shows_the_secret() -> None:
    assert SECRET not in repr(SigningAuth(SECRET))
    with pytest.raises(ValueError, match="secret"):
        SigningAuth("")


def test_secret_mode_installs_no_auth() -> None:
    assert build_client().auth is None


@override_settings(SERVICE_AUTH_MODE="hmac")
def test_hmac_mode_installs_the_signing_auth() -> None:
    assert isinstance(build_client().auth, SigningAuth)


# -- through the views, against the respx-mocked service ---------------------------------------
@pytest.fixture
def hmac_mode():
    """hmac mode for this test; the client of the secret mode is not reused."""
    with override_settings(SERVICE_AUTH_MODE="hmac"):
        yield


@pytest.mark.asyncio
async def test_views_sign_chat_stream_upload_and_quiz(hmac_mode, alice_client, alice, service):
    await aclose_clients()  # a client built in secret mode may be cached for this loop
    assert isinstance(get_client().auth, SigningAuth)
    stream_body = b'event: token\ndata: {"text":"a"}\n\nevent: done\ndata: {"usage":{}}\n\n'
    routes = {
        "/chatbot/": service.post("/chatbot/").mock(return_value=httpx.Response(200, json=REPLY)),
        "/chatbot/stream/": service.post("/chatbot/stream/").mock(
            return_value=httpx.Response(
                200, content=stream_body, headers={"content-type": "text/event-stream"}
            )
        ),
        "/chatbot/file/": service.post("/chatbot/file/").mock(
            return_value=httpx.Response(200, json=REPLY)
        ),
        "/quiz/": service.post("/quiz/").mock(
            return_value=httpx.Response(200, json={"topic": "t", "questions": []})
        ),
    }
    chat = await alice_client.post("/api/chat/", {"message": "x"}, content_type="application/json")
    stream = await alice_client.post(
        "/api/chat/stream/", {"message": "x"}, content_type="application/json"
    )
    upload_body, upload_type = multipart(b"notes " * 5000)
    upload = await alice_client.post("/api/chat/file/", upload_body, content_type=upload_type)
    quiz = await alice_client.post(
        "/api/quiz/generate/",
        {"topic": "HTTP", "num_questions": 1},
        content_type="application/json",
    )
    assert chat.status_code == 200, chat.content
    assert stream.status_code == 200
    assert await read_stream(stream) == stream_body
    assert upload.status_code == 200, upload.content
    assert quiz.status_code == 200, quiz.content
    for path, route in routes.items():
        sent = route.calls.last.request
        assert "x-internal-secret" not in sent.headers, path
        ts = sent.headers["x-internal-timestamp"]
        assert abs(int(ts) - time.time()) < 5, path
        assert sent.headers["x-internal-signature"] == expected_signature(
            "POST", path, ts, str(alice.pk), sent.content
        ), path
    upload_sent = routes["/chatbot/file/"].calls.last.request
    assert upload_sent.content == upload_body
    assert upload_sent.extensions[BODY_SHA256] == hashlib.sha256(upload_body).hexdigest().encode()
    assert json.loads(chat.content) == REPLY
    await aclose_clients()


@pytest.fixture
def alice_browser(alice) -> Browser:
    django = Client()
    django.force_login(alice)
    return Browser(django.cookies[settings.SESSION_COOKIE_NAME].value)


@pytest.mark.asyncio
async def test_the_fast_path_signs_an_upload_with_the_digest_it_took_while_spooling(
    hmac_mode, alice, alice_browser: Browser, service
) -> None:
    await aclose_clients()
    route = service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    body, content_type = multipart(b"notes " * 50_000)  # 300 kB, sent in 64 KiB pieces
    recorder = Recorder(django_application)
    result = await call(
        FastPath(recorder),
        "POST",
        "/api/chat/file/",
        alice_browser.headers(content_type=content_type),
        [body[n : n + 65536] for n in range(0, len(body), 65536)],
    )
    assert result.status == 200, result.body
    assert recorder.calls == 0, "the upload was not served by the fast path"
    sent = route.calls.last.request
    assert sent.content == body
    # The digest came from the spool, so the signer had no need to read the body.
    assert sent.extensions[BODY_SHA256] == hashlib.sha256(body).hexdigest().encode()
    assert sent.headers["x-internal-signature"] == expected_signature(
        "POST", "/chatbot/file/", sent.headers["x-internal-timestamp"], str(alice.pk), body
    )
