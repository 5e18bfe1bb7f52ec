"""The old sync views at /api/legacy/ (run under WSGI; here through Django's sync Client)."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from django.test import Client, override_settings

from .conftest import SECRET, SERVICE_URL
from .test_signing import expected_signature


@pytest.fixture
def legacy_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_legacy_chat_proxies_with_the_same_headers(legacy_client, alice) -> None:
    with respx.mock(base_url=SERVICE_URL) as router:
        route = router.post("/chatbot/").mock(return_value=httpx.Response(200, json={"reply": "r"}))
        response = legacy_client.post(
            "/api/legacy/chat/", {"message": "m"}, content_type="application/json"
        )
    assert response.status_code == 200
    assert json.loads(response.content) == {"reply": "r"}
    sent = route.calls.last.request
    assert sent.headers["x-internal-secret"] == SECRET
    assert sent.headers["x-user-id"] == str(alice.pk)


def test_legacy_views_sign_in_hmac_mode(legacy_client, alice) -> None:
    from apps.chatbot import views

    body = b'{"message": "m"}'
    with override_settings(SERVICE_AUTH_MODE="hmac"):
        if views._client is not None:  # built once per process, from the settings
            views._client.close()
        views._client = None
        try:
            with respx.mock(base_url=SERVICE_URL) as router:
                route = router.post("/chatbot/").mock(
                    return_value=httpx.Response(200, json={"reply": "r"})
                )
                response = legacy_client.post(
                    "/api/legacy/chat/", body, content_type="application/json"
                )
        finally:
            if views._client is not None:
                views._client.close()
            views._client = None
    assert response.status_code == 200, response.content
    sent = route.calls.last.request
    assert "x-internal-secret" not in sent.headers
    timestamp = sent.headers["x-internal-timestamp"]
    assert sent.headers["x-internal-signature"] == expected_signature(
        "POST", "/chatbot/", timestamp, str(alice.pk), body
    )


def test_legacy_stream_relays_and_ends_broken_streams_with_an_error(legacy_client) -> None:
    def body():
        yield b'event: token\ndata: {"text":"a"}\n\nevent: tok'
        raise httpx.RemoteProtocolError("peer closed connection")

    with respx.mock(base_url=SERVICE_URL) as router:
        router.post("/chatbot/stream/").mock(
            return_value=httpx.Response(
                200, content=body(), headers={"content-type": "text/event-stream"}
            )
        )
        response = legacy_client.post(
            "/api/legacy/chat/stream/", {"message": "m"}, content_type="application/json"
        )
        content = b"".join(response.streaming_content)
    assert response["Content-Type"] == "text/event-stream"
    assert content.startswith(b'event: token\ndata: {"text":"a"}\n\nevent: error\ndata: ')
    assert content.count(b"event:") == 2


def test_legacy_anonymous_is_401() -> None:
    response = Client().post("/api/legacy/chat/", {"message": "m"}, content_type="application/json")
    assert response.status_code == 401
