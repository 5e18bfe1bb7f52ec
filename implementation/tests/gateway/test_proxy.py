"""The proxied endpoints through Django (AsyncClient) against a respx-mocked service."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from django.test import AsyncClient, override_settings

from gateway.routes import ROUTES as TABLE
from gateway.routes import Kind, ProxyRoute

from .conftest import SECRET

pytestmark = pytest.mark.asyncio

REPLY = {"reply": "hi", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def paths(routes: list[ProxyRoute]) -> list[tuple[str, str]]:
    return [(route.path, route.upstream) for route in routes]


#: (browser path, service path) of every async route in the route table, and of its JSON ones.
ASYNC_ROUTES = [route for route in TABLE if not route.legacy]
ROUTES = paths(ASYNC_ROUTES)
JSON_ROUTES = paths([route for route in ASYNC_ROUTES if route.kind is not Kind.UPLOAD])


def is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert set(body) >= {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert SECRET not in response.content.decode()
    return body


async def read_stream(response) -> bytes:
    assert response.streaming
    return b"".join([chunk async for chunk in response.streaming_content])


async def test_chat_forwards_the_body_unchanged_with_the_gateways_headers(
    alice_client, alice, service
) -> None:
    route = service.post("/chatbot/").mock(return_value=httpx.Response(200, json=REPLY))
    body = b'{"message": "h\\u00e9llo",  "history": []}'
    response = await alice_client.post(
        "/api/chat/",
        body,
        content_type="application/json",
        headers={
            "X-Internal-Secret": "forged",
            "X-User-Id": "999",
            "X-Request-ID": "rid-7",
            "Authorization": "Bearer x",
            "X-Forwarded-For": "1.2.3.4",
        },
    )
    assert response.status_code == 200
    assert json.loads(response.content) == REPLY
    assert response["X-Request-ID"] == "rid-7"
    sent = route.calls.last.request
    assert sent.content == body
    assert sent.headers.get_list("x-internal-secret") == [SECRET]
    assert sent.headers.get_list("x-user-id") == [str(alice.pk)]
    assert sent.headers["x-request-id"] == "rid-7"
    for name in ("cookie", "authorization"):
        assert name not in sent.headers
    # The gateway's own, from the connection: never the client's (SEC-4).
    assert sent.headers.get_list("x-forwarded-for") == ["127.0.0.1"]


async def test_stream_is_relayed_as_event_stream(alice_client, service) -> None:
    events = b'event: token\ndata: {"text":"a"}\n\nevent: done\ndata: {"usage":{}}\n\n'

    async def body():
        yield events[:10]
        yield events[10:]

    service.post("/chatbot/stream/").mock(
        return_value=httpx.Response(
            200, content=body(), headers={"content-type": "text/event-stream"}
        )
    )
    response = await alice_client.post(
        "/api/chat/stream/", {"message": "x"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert response.is_async
    assert await read_stream(response) == events


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (httpx.ConnectError("refused"), 502),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), 502),
        (httpx.ConnectTimeout("slow connect"), 504),
        (httpx.ReadTimeout("slow read"), 504),
        (httpx.WriteTimeout("slow write"), 504),
        (httpx.PoolTimeout("pool full"), 503),
    ],
)
@pytest.mark.parametrize(("path", "upstream"), JSON_ROUTES)
async def test_transport_failures_are_mapped(
    alice_client, service, failure: Exception, status: int, path: str, upstream: str
) -> None:
    service.post(upstream).mock(side_effect=failure)
    response = await alice_client.post(path, {"message": "x"}, content_type="application/json")
    is_problem(response, status)
    if status == 503:
        assert response["Retry-After"] == "1"
    assert response["X-Request-ID"]


@pytest.mark.parametrize("upstream_status", [500, 502, 503, 504])
async def test_service_5xx_becomes_502_without_its_details(
    alice_client, service, upstream_status: int
) -> None:
    service.post("/chatbot/").mock(
        return_value=httpx.Response(
            upstream_status,
            json={"detail": "Traceback (most recent call last): internal-detail-123"},
            headers={"retry-after": "9"},
        )
    )
    response = await alice_client.post(
        "/api/chat/", {"message": "x"}, content_type="application/json"
    )
    body = is_problem(response, 502)
    assert "internal-detail-123" not in response.content.decode()
    assert body["title"] == "Bad Gateway"


@pytest.mark.parametrize("upstream_status", [401, 403])
async def test_service_refusing_the_secret_is_502_and_logged(
    alice_client, service, caplog, upstream_status: int
) -> None:
    service.post("/quiz/").mock(return_value=httpx.Response(upstream_status))
    with caplog.at_level(logging.ERROR, logger="gateway.proxy.failures"):
        response = await alice_client.post(
            "/api/quiz/generate/", {"topic": "t"}, content_type="application/json"
        )
    is_problem(response, 502)
    lines = [record.getMessage() for record in caplog.records]
    assert any("SERVICE_SECRET does not match" in line for line in lines), lines
    assert not any(SECRET in line for line in lines)


async def test_service_4xx_problem_is_relayed(alice_client, service) -> None:
    upstream_problem = {
        "type": "https://errors.example/quiz-bounds",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "num_questions must be at most 20",
    }
    service.post("/quiz/").mock(
        return_value=httpx.Response(
            422,
            content=json.dumps(upstream_problem).encode(),
            headers={"content-type": "application/problem+json", "set-cookie": "x=1"},
        )
    )
    response = await alice_client.post(
        "/api/quiz/generate/", {"num_questions": 99}, content_type="application/json"
    )
    assert is_problem(response, 422) == upstream_problem
    assert "set-cookie" not in response.headers


async def test_service_4xx_that_is_not_a_problem_is_wrapped(alice_client, service) -> None:
    service.post("/chatbot/").mock(
        return_value=httpx.Response(429, json={"detail": "slow down"}, headers={"retry-after": "3"})
    )
    response = await alice_client.post(
        "/api/chat/", {"message": "x"}, content_type="application/json"
    )
    assert is_problem(response, 429)["detail"] == "slow down"
    assert response["Retry-After"] == "3"


@pytest.mark.parametrize("content", [b"not json", b"{", b""])
async def test_a_2xx_answer_that_is_not_json_is_502(alice_client, service, content: bytes) -> None:
    service.post("/chatbot/").mock(
        return_value=httpx.Response(
            200, content=content, headers={"content-type": "application/json"}
        )
    )
    response = await alice_client.post(
        "/api/chat/", {"message": "x"}, content_type="application/json"
    )
    is_problem(response, 502)


async def test_a_stream_answer_that_is_not_an_event_stream_is_502(alice_client, service) -> None:
    service.post("/chatbot/stream/").mock(return_value=httpx.Response(200, json=REPLY))
    response = await alice_client.post(
        "/api/chat/stream/", {"message": "x"}, content_type="application/json"
    )
    assert not response.streaming
    is_problem(response, 502)


async def test_a_stream_request_refused_by_the_service_is_a_problem(alice_client, service) -> None:
    service.post("/chatbot/stream/").mock(
        return_value=httpx.Response(
            422,
            json={"type": "about:blank", "title": "x", "status": 422, "detail": "bad message"},
            headers={"content-type": "application/problem+json"},
        )
    )
    response = await alice_client.post(
        "/api/chat/stream/", {"message": 1}, content_type="application/json"
    )
    assert not response.streaming
    assert is_problem(response, 422)["detail"] == "bad message"


# -- what the gateway refuses before calling the service -----------------------------------------
@pytest.mark.parametrize(("path", "upstream"), ROUTES)
async def test_anonymous_requests_get_401_and_never_reach_the_service(
    service, path: str, upstream: str
) -> None:
    route = service.post(upstream).mock(return_value=httpx.Response(200, json=REPLY))
    response = await AsyncClient().post(path, {"message": "x"}, content_type="application/json")
    is_problem(response, 401)
    assert "Location" not in response
    assert not route.called


@pytest.mark.parametrize(("path", "upstream"), ROUTES)
async def test_missing_csrf_token_gets_403_and_never_reaches_the_service(
    alice, service, path: str, upstream: str
) -> None:
    route = service.post(upstream).mock(return_value=httpx.Response(200, json=REPLY))
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    response = await client.post(path, {"message": "x"}, content_type="application/json")
    assert is_problem(response, 403)["detail"].startswith("CSRF verification failed")
    assert not route.called


@pytest.mark.parametrize(("path", "upstream"), JSON_ROUTES)
async def test_bad_json_bodies_are_refused(alice_client, service, path: str, upstream: str) -> None:
    route = service.post(upstream).mock(return_value=httpx.Response(200, json=REPLY))
    is_problem(await alice_client.post(path, b"{", content_type="application/json"), 400)
    is_problem(await alice_client.post(path, b"[1]", content_type="application/json"), 400)
    is_problem(await alice_client.post(path, b"[" * 100_000, content_type="application/json"), 400)
    is_problem(await alice_client.post(path, b"{}", content_type="text/plain"), 415)
    is_problem(await alice_client.post(path, {"message": "x"}), 415)  # multipart
    too_big = b'{"message": "' + b"x" * (1024 * 1024) + b'"}'
    is_problem(await alice_client.post(path, too_big, content_type="application/json"), 413)
    assert not route.called


@pytest.mark.parametrize("path", ["/api/chat/", "/api/chat/stream/", "/api/chat/file/"])
async def test_wrong_method_is_405_with_allow(alice_client, path: str) -> None:
    response = await alice_client.get(path)
    is_problem(response, 405)
    assert response["Allow"] == "POST"


# -- uploads ------------------------------------------------------------------------------------
def multipart(content: bytes, boundary: str = "b0undary-xyz") -> tuple[bytes, str]:
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="message"\r\n\r\n'
            "what is this?\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            # A type the gateway does not sniff (SEC-6): the service decides about it.
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def test_upload_is_forwarded_byte_for_byte(alice_client, service) -> None:
    route = service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    content = bytes(range(256)) * 300 + b"\r\n--b0undary-xy\r\n\r\n"
    body, content_type = multipart(content)
    response = await alice_client.post("/api/chat/file/", body, content_type=content_type)
    assert response.status_code == 200, response.content
    sent = route.calls.last.request
    assert sent.headers["content-type"] == content_type
    assert sent.headers["content-length"] == str(len(body))
    assert sent.content == body


@override_settings(MAX_UPLOAD_SIZE=1000)
@pytest.mark.parametrize(("size", "status"), [(1000, 200), (1001, 413)])
async def test_upload_limit_is_the_files_size(
    alice_client, service, size: int, status: int
) -> None:
    route = service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    body, content_type = multipart(b"x" * size)
    response = await alice_client.post("/api/chat/file/", body, content_type=content_type)
    assert response.status_code == status
    assert route.called is (status == 200)


@override_settings(MAX_UPLOAD_SIZE=1000, MULTIPART_OVERHEAD=100)
async def test_an_oversized_content_length_is_refused_unread(alice_client, service) -> None:
    route = service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    body, content_type = multipart(b"x" * 2000)
    response = await alice_client.post("/api/chat/file/", body, content_type=content_type)
    is_problem(response, 413)
    assert not route.called


async def test_upload_with_a_wrong_content_type_is_415(alice_client, service) -> None:
    route = service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    is_problem(
        await alice_client.post(
            "/api/chat/file/", {"message": "x"}, content_type="application/json"
        ),
        415,
    )
    is_problem(
        await alice_client.post("/api/chat/file/", b"--x", content_type="multipart/form-data"), 415
    )
    assert not route.called


async def test_upload_csrf_token_comes_from_the_header(alice, service) -> None:
    route = service.post("/chatbot/file/").mock(return_value=httpx.Response(200, json=REPLY))
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(alice)
    token = json.loads((await client.get("/api/auth/csrf/")).content)["csrfToken"]
    body, content_type = multipart(b"data")
    response = await client.post(
        "/api/chat/file/", body, content_type=content_type, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200, response.content
    assert route.calls.last.request.content == body
