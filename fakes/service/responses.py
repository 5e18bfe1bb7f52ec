"""Tiny ASGI response helpers.

The fake answers with raw ASGI messages instead of Starlette responses so that a
behaviour can shape every byte: one ``send`` per SSE event, headers that a framework
would refuse, a body that is not what its content type claims.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

from starlette.types import Send

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
TEXT = "text/plain; charset=utf-8"

RawHeaders = Sequence[tuple[bytes, bytes]]


def dumps(payload: Any) -> bytes:
    """Compact JSON, the form every part of the project puts on the wire."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def phrase(status: int) -> str:
    """The reason phrase of ``status``, or a neutral word for unknown codes."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(status: int, detail: str, title: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem object."""
    return {
        "type": "about:blank",
        "title": title or phrase(status),
        "status": status,
        "detail": detail,
    }


def encode_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Encode ``(name, value)`` pairs the way ASGI wants them (latin-1 bytes)."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: str | None,
    extra_headers: RawHeaders = (),
) -> None:
    """Send a complete, non-streamed response with an exact Content-Length."""
    headers: list[tuple[bytes, bytes]] = []
    no_body = status in (204, 304)
    if content_type is not None and not no_body:
        headers.append((b"content-type", content_type.encode("latin-1")))
    if not no_body:
        headers.append((b"content-length", str(len(body)).encode("ascii")))
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if no_body else body})


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    content_type: str | None = None,
    extra_headers: RawHeaders = (),
) -> None:
    """Send ``payload`` as JSON (problem+json by default for error statuses)."""
    if content_type is None:
        content_type = PROBLEM_JSON if status >= 400 else JSON
    await send_bytes(send, status, dumps(payload), content_type, extra_headers)


async def send_problem(
    send: Send,
    status: int,
    detail: str,
    extra_headers: RawHeaders = (),
) -> None:
    """Send a problem+json error."""
    await send_json(send, status, problem(status, detail), PROBLEM_JSON, extra_headers)
