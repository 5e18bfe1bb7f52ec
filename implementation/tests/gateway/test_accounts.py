"""Auth endpoints (GW-SESS-1/2/5) and the ensure_user command."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import AsyncClient

from .conftest import PASSWORD

pytestmark = pytest.mark.asyncio


async def csrf_client() -> tuple[AsyncClient, str]:
    client = AsyncClient(enforce_csrf_checks=True)
    response = await client.get("/api/auth/csrf/")
    assert response.status_code == 200
    token = json.loads(response.content)["csrfToken"]
    assert client.cookies[settings.CSRF_COOKIE_NAME].value
    return client, token


async def login(client: AsyncClient, token: str, password: str = PASSWORD):
    return await client.post(
        "/api/auth/login/",
        {"username": "alice", "password": password},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )


async def test_csrf_login_me_logout(alice) -> None:
    client, token = await csrf_client()
    assert (await client.get("/api/auth/me/")).status_code == 401

    response = await login(client, token)
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert body["id"] == alice.pk
    assert body["username"] == "alice"
    assert body["csrfToken"]
    assert body["csrfToken"] != token  # rotated at login
    session_cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session_cookie["httponly"]
    assert session_cookie["samesite"] == "Lax"

    me = await client.get("/api/auth/me/")
    assert json.loads(me.content) == {"id": alice.pk, "username": "alice"}

    logout = await client.post("/api/auth/logout/", headers={"X-CSRFToken": body["csrfToken"]})
    assert logout.status_code == 204
    assert (await client.get("/api/auth/me/")).status_code == 401


async def test_wrong_password_is_401_problem(alice) -> None:
    client, token = await csrf_client()
    response = await login(client, token, password="wrong")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert settings.SESSION_COOKIE_NAME not in response.cookies


async def test_login_needs_a_csrf_token(alice) -> None:
    client, _ = await csrf_client()
    response = await login(client, "")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body", [{"username": "alice"}, {"username": 1, "password": "x"}, {"password": "x"}]
)
async def test_login_with_missing_fields_is_400(alice, body: dict) -> None:
    response = await AsyncClient().post("/api/auth/login/", body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


async def test_login_rotates_the_session_key_even_for_the_same_user(alice) -> None:
    client, token = await csrf_client()
    first = await login(client, token)
    before = first.cookies[settings.SESSION_COOKIE_NAME].value
    again = await login(client, json.loads(first.content)["csrfToken"])
    assert again.status_code == 200
    after = again.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != before
    replay = AsyncClient()
    replay.cookies[settings.SESSION_COOKIE_NAME] = before
    assert (await replay.get("/api/auth/me/")).status_code == 401


async def test_a_planted_session_id_is_not_kept(alice) -> None:
    client, token = await csrf_client()
    planted = "a" * 32
    client.cookies[settings.SESSION_COOKIE_NAME] = planted
    response = await login(client, token)
    assert response.cookies[settings.SESSION_COOKIE_NAME].value != planted


async def test_cors_for_listed_origin_only() -> None:
    client = AsyncClient()
    listed = await client.get("/api/health/", headers={"Origin": "http://localhost:3000"})
    assert listed["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert listed["Access-Control-Allow-Credentials"] == "true"
    assert "x-request-id" in listed["Access-Control-Expose-Headers"].lower()
    other = await client.get("/api/health/", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other
    preflight = await client.options(
        "/api/chat/",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-csrftoken,x-request-id",
        },
    )
    assert preflight.status_code == 200
    allowed = preflight["Access-Control-Allow-Headers"].lower()
    assert {"content-type", "x-csrftoken", "x-request-id"} <= {
        h.strip() for h in allowed.split(",")
    }


async def test_security_headers() -> None:
    response = await AsyncClient().get("/api/health/")
    assert json.loads(response.content) == {"status": "ok"}
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
