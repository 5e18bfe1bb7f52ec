"""The shared-secret gate (SVC-AUTH-1..4, SVC-AUTH-6)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fastapi_service.core.middleware import InternalSecretMiddleware

from .helpers import PREVIOUS, SECRET, assert_problem, call_raw

JSON = (b"content-type", b"application/json")
ROUTES = ["/chatbot/", "/chatbot/stream/", "/chatbot/file/", "/quiz/"]


class Forbidden:
    """An inner app that must never be reached."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pytest.fail("the app behind the middleware was called")


def gate(*secrets: str) -> InternalSecretMiddleware:
    return InternalSecretMiddleware(Forbidden(), secrets=tuple(s.encode() for s in secrets))


def body_of(raw: Any) -> dict[str, Any]:
    assert raw.header(b"content-type") == b"application/problem+json"
    problem = raw.json()
    assert problem["status"] == raw.status
    assert {"type", "title", "status", "detail"} <= problem.keys()
    return problem


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([], 401),
        ([(b"x-internal-secret", b"")], 401),
        ([(b"x-internal-secret", b"   ")], 401),
        ([(b"x-internal-secret", b"wrong")], 403),
        ([(b"x-internal-secret", SECRET.encode() + b"x")], 403),
        ([(b"x-internal-secret", SECRET.encode()[:-1])], 403),
        ([(b"x-internal-secret", SECRET.encode()), (b"x-internal-secret", SECRET.encode())], 403),
        ([(b"x-internal-secret", b"wrong"), (b"x-internal-secret", SECRET.encode())], 403),
        ([(b"x-internal-secret", "sécret".encode())], 403),
        ([(b"x-internal-secret", b"\xff\xfe")], 403),
    ],
    ids=[
        "missing",
        "empty",
        "blank",
        "wrong",
        "longer",
        "shorter",
        "twice",
        "wrong+right",
        "non-ascii-utf8",
        "non-ascii-bytes",
    ],
)
async def test_refusals_answer_before_the_app_and_the_body(
    headers: list[tuple[bytes, bytes]], status: int
) -> None:
    raw = await call_raw(gate(SECRET, PREVIOUS), "POST", "/chatbot/", [JSON, *headers], body=None)
    assert raw.status == status
    body_of(raw)
    for _, value in headers:
        if value.strip():
            assert value not in raw.body  # never echoes what was sent


@pytest.mark.asyncio
@pytest.mark.parametrize("secret", [SECRET, PREVIOUS])
async def test_current_and_previous_secret_reach_the_app(secret: str) -> None:
    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = InternalSecretMiddleware(inner, secrets=(SECRET.encode(), PREVIOUS.encode()))
    raw = await call_raw(middleware, "POST", "/quiz/", [(b"x-internal-secret", secret.encode())])
    assert raw.status == 204
    assert reached == ["/quiz/"]


@pytest.mark.asyncio
async def test_previous_secret_is_refused_when_not_configured() -> None:
    raw = await call_raw(
        gate(SECRET), "POST", "/quiz/", [(b"x-internal-secret", PREVIOUS.encode())]
    )
    assert raw.status == 403


@pytest.mark.asyncio
async def test_header_name_is_case_insensitive() -> None:
    raw = await call_raw(gate("a"), "POST", "/quiz/", [(b"X-Internal-Secret", b"b")], body=None)
    assert raw.status == 403


@pytest.mark.asyncio
async def test_lifespan_and_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = InternalSecretMiddleware(inner, secrets=(b"s",))
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await middleware({"type": "websocket", "path": "/x", "headers": []}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


def test_middleware_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        InternalSecretMiddleware(Forbidden(), secrets=())
    with pytest.raises(ValueError, match="non-empty"):
        InternalSecretMiddleware(Forbidden(), secrets=(b"",))


@pytest.mark.asyncio
async def test_health_needs_no_secret_and_says_only_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Internal-Secret": ""})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.asyncio
async def test_only_the_probes_are_exempt(app: FastAPI) -> None:
    for method, path in [("GET", "/health"), ("GET", "/healthz"), ("GET", "/readyz")]:
        raw = await call_raw(app, method, path, [], body=None)
        assert raw.status != 401, (method, path)
    for method, path in [("POST", "/health"), ("GET", "/health/"), ("POST", "/readyz")]:
        raw = await call_raw(app, method, path, [], body=None)
        assert raw.status == 401, (method, path)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/nope"])
async def test_docs_and_unknown_paths_need_the_secret(app: FastAPI, path: str) -> None:
    raw = await call_raw(app, "GET", path, [], body=None)
    assert raw.status == 401
    body_of(raw)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ROUTES)
async def test_every_route_is_guarded_in_the_real_app(app: FastAPI, path: str) -> None:
    headers = [JSON, (b"content-length", b"1000000000")]
    missing = await call_raw(app, "POST", path, headers, body=None)
    wrong = await call_raw(app, "POST", path, [*headers, (b"x-internal-secret", b"no")], body=None)
    assert (missing.status, wrong.status) == (401, 403)


@pytest.mark.asyncio
async def test_openapi_is_served_with_the_secret(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "InternalSecret" in response.json()["components"]["securitySchemes"]
    docs = await client.get("/docs")
    assert docs.status_code == 200


@pytest.mark.asyncio
async def test_refusal_through_http_client(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/chatbot/", json={"message": "hi"}, headers={"X-Internal-Secret": "bad"}
    )
    problem = assert_problem(response, 403)
    assert "bad" not in json.dumps(problem)
