"""Property tests (hypothesis) of the service's problem+json rendering.

Whatever the status, detail, exception or validation error, the service answers an
RFC 9457 problem whose ``status`` is the HTTP status, with a title, as
``application/problem+json``, and without a stack trace or the request's input
(fastapi_service/core/problems.py); the secret check answers every wrong secret
with such a problem too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from fastapi_service.core import problems
from fastapi_service.main import create_app

from .helpers import PREVIOUS, SECRET, make_settings

TRACE_MARKERS = ("Traceback (most recent call last)", 'File "')
statuses = st.integers(400, 599)
details = st.text(max_size=200)
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)


def request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": []})


def assert_problem(status_code: int, media_type: str, body: Any, status: int) -> dict[str, Any]:
    assert status_code == status
    assert media_type == "application/problem+json"
    assert isinstance(body, dict), body
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status
    assert all(isinstance(body[key], str) for key in ("type", "title", "detail")), body
    assert body["title"]
    return body


def rendered(response: problems.ProblemResponse) -> dict[str, Any]:
    return json.loads(response.body)


@given(
    statuses, details, st.dictionaries(st.sampled_from(["errors", "instance", "x"]), json_scalars)
)
def test_property_problem_is_valid_with_the_http_status(
    status: int, detail: str, extensions: dict[str, Any]
) -> None:
    response = problems.problem(status, detail, **extensions)
    body = assert_problem(response.status_code, response.media_type, rendered(response), status)
    assert body["detail"] == detail
    assert body["title"] == problems.status_title(status)
    for key, value in extensions.items():
        assert body[key] == value


@given(statuses, details)
def test_property_send_problem_from_middleware_is_a_whole_problem(status: int, detail: str) -> None:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(problems.send_problem(send, status, detail))
    start, body = messages
    headers = dict(start["headers"])
    assert int(headers[b"content-length"]) == len(body["body"])
    assert body["more_body"] is False
    parsed = assert_problem(
        start["status"], headers[b"content-type"].decode(), json.loads(body["body"]), status
    )
    assert parsed["detail"] == detail
    assert b"\n" not in body["body"]


@given(statuses, st.one_of(st.none(), details, st.integers(), st.lists(st.text(max_size=5))))
def test_property_any_http_exception_becomes_its_problem(status: int, detail: object) -> None:
    exc = StarletteHTTPException(status, detail=detail)  # type: ignore[arg-type]
    response = asyncio.run(problems._http_exception(request(), exc))
    body = assert_problem(response.status_code, response.media_type, rendered(response), status)
    if isinstance(detail, str) and detail:
        assert body["detail"] == detail


SECRETISH = "input-that-must-not-be-echoed"
locs = st.lists(st.one_of(st.text(max_size=10), st.integers(), st.none(), st.floats()), max_size=4)
validation_errors = st.lists(
    st.fixed_dictionaries(
        {
            "loc": locs.map(tuple),
            "msg": st.text(max_size=20),
            "type": st.sampled_from(["missing", "string_too_long", "x"]),
        },
        optional={"input": st.just(SECRETISH), "ctx": st.just({"secret": SECRETISH})},
    ),
    min_size=1,
    max_size=5,
)


@given(validation_errors)
def test_property_validation_errors_are_422_problems_without_the_input(
    errors: list[dict[str, Any]],
) -> None:
    response = asyncio.run(problems._validation_error(request(), RequestValidationError(errors)))
    body = assert_problem(response.status_code, response.media_type, rendered(response), 422)
    assert SECRETISH not in response.body.decode()
    assert len(body["errors"]) == len(errors)
    for issue in body["errors"]:
        assert set(issue) == {"loc", "msg", "type"}
        assert all(isinstance(part, str | int) for part in issue["loc"])


@given(st.text(max_size=200))
def test_property_an_unexpected_exception_is_a_generic_500_without_a_trace(message: str) -> None:
    try:
        raise RuntimeError(f'Traceback (most recent call last):\n  File "x.py"\n{message}')
    except RuntimeError as exc:
        response = asyncio.run(problems._unexpected(request(), exc))
    body = assert_problem(response.status_code, response.media_type, rendered(response), 500)
    text = response.body.decode()
    for marker in TRACE_MARKERS:
        assert marker not in text
    assert body["detail"] == "The service failed unexpectedly."


APP = create_app(make_settings())
header_values = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    # The right secrets, and near misses: repeated, padded, truncated, other case.
    st.sampled_from([SECRET, PREVIOUS, SECRET + "x", SECRET[:-1], SECRET.upper(), ""]),
)


async def post_quiz(headers: list[tuple[str, str]]) -> httpx.Response:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        return await client.post("/quiz/", headers=headers, content=b"{}")


@settings(max_examples=60, deadline=None)
@given(st.lists(header_values, max_size=3))
def test_property_every_wrong_secret_is_a_401_or_403_problem(values: list[str]) -> None:
    response = asyncio.run(post_quiz([("X-Internal-Secret", value) for value in values]))
    if len(values) == 1 and values[0] in (SECRET, PREVIOUS):
        assert response.status_code not in (401, 403)  # past the check: the body is refused
        return
    assert response.status_code in (401, 403), (values, response.status_code)
    assert_problem(
        response.status_code,
        response.headers["content-type"],
        response.json(),
        response.status_code,
    )
    assert SECRET not in response.text
    assert PREVIOUS not in response.text
