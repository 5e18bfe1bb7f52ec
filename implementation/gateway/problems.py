"""RFC 9457 problem details: the one shape every gateway error takes (PROB-1)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.http import JsonResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(status: int, detail: str, *, title: str | None = None) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
    }


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JsonResponse:
    """A problem+json response; ``headers`` adds e.g. Allow or Retry-After, ``extensions``
    extra members of the problem object (RFC 9457 section 3.2)."""
    response = JsonResponse(
        {**problem_body(status, detail, title=title), **(extensions or {})},
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def problem_json_bytes(status: int, detail: str) -> bytes:
    """Compact JSON, as used on a ``data:`` line of an SSE error event."""
    return json.dumps(problem_body(status, detail), separators=(",", ":")).encode()


def normalize_problem(data: object, status: int) -> dict[str, Any] | None:
    """Take an upstream problem object, forcing ``status`` to the relayed status.

    Returns None when ``data`` is not a JSON object, so the caller wraps it.
    """
    if not isinstance(data, dict):
        return None
    body = dict(data)
    body["status"] = status
    body.setdefault("type", "about:blank")
    if not isinstance(body.get("title"), str):
        body["title"] = _phrase(status)
    if not isinstance(body.get("detail"), str):
        body["detail"] = body["title"]
    return body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemError(Exception):
    """Raised by view helpers; ``api_view`` turns it into a problem response."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    def response(self) -> JsonResponse:
        return problem(self.status, self.detail, headers=self.headers)
