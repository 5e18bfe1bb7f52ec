"""RFC 9457 problem details: the one shape every error of the service takes.

Callers (the gateway, schemathesis, people with curl) can rely on
`application/problem+json` with `type`, `title`, `status` and `detail` for every
status of 400 and above, including the ones Starlette produces on its own
(404, 405, 413) and the fallback for bugs, which never shows a stack trace.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from fastapi_service.core.disconnect import ClientDisconnected
from fastapi_service.core.llm import LLMError

PROBLEM_MEDIA_TYPE = "application/problem+json"
CLIENT_CLOSED_REQUEST = 499  # nginx's code; nobody reads it, the client is gone

logger = logging.getLogger("fastapi_service")

_EXTRA_TITLES = {CLIENT_CLOSED_REQUEST: "Client Closed Request"}


class ProblemResponse(JSONResponse):
    """A JSON response with the problem+json media type."""

    media_type = PROBLEM_MEDIA_TYPE


def status_title(status: int) -> str:
    """The standard reason phrase, so `title` never varies for one status."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _EXTRA_TITLES.get(status, "Error")


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """Build a problem response; `extensions` become extra members (RFC 9457 section 3.2)."""
    body = problem_body(status, detail, title=title)
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


def problem_body(status: int, detail: str, *, title: str | None = None) -> dict[str, Any]:
    """The problem object alone, also used as the data of an SSE `error` event."""
    return {
        "type": "about:blank",
        "title": title or status_title(status),
        "status": status,
        "detail": detail,
    }


async def send_problem(send: Send, status: int, detail: str) -> None:
    """Answer from pure ASGI middleware, which has no Response machinery around it."""
    body = json.dumps(problem_body(status, detail), separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else None
    return problem(
        exc.status_code,
        detail or status_title(exc.status_code),
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(error.get("type") == "json_invalid" for error in raw):
        return problem(400, "The request body is not valid JSON.")
    # Only where and what: `input` and `ctx` could echo large or sensitive request data.
    errors = [
        {
            "loc": [part for part in error.get("loc", ()) if isinstance(part, str | int)],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in raw
    ]
    return problem(422, "The request does not match the schema.", errors=errors)


async def _llm_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, LLMError)
    logger.warning("LLM call failed: %s (answering %d)", exc.detail, exc.status)
    return problem(exc.status, exc.detail, headers=exc.headers or None)


async def _client_disconnected(request: Request, exc: Exception) -> ProblemResponse:
    return problem(CLIENT_CLOSED_REQUEST, "The client closed the connection.")


async def _unexpected(request: Request, exc: Exception) -> ProblemResponse:
    # Starlette logs the traceback to stderr after this; the body stays generic.
    return problem(500, "The service failed unexpectedly.")


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can produce through `problem()`."""
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(LLMError, _llm_error)
    app.add_exception_handler(ClientDisconnected, _client_disconnected)
    app.add_exception_handler(Exception, _unexpected)
