"""Helpers of the service suite: the spec's operations, calls per route, checks on failures.

Some of these are generic enough for the harness (``operations``, ``resolve``,
``raw_exchange``, ``assert_failure``).
"""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import httpx
import yaml

from harness.client import Event, assert_problem, parse_stream
from harness.requirements import SPEC

SECRET_HEADER = "X-Internal-Secret"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
MiB = 1024 * 1024

# -- the spec ---------------------------------------------------------------------------------


@cache
def service_spec() -> dict[str, Any]:
    """spec/service.openapi.yaml, parsed."""
    path = SPEC.parent / "service.openapi.yaml"
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) of every operation in an OpenAPI document."""
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(document: Mapping[str, Any], node: Any, _seen: frozenset[str] = frozenset()) -> Any:
    """``node`` with every local ``$ref`` replaced by its target (cycles are left as refs)."""
    if isinstance(node, list):
        return [resolve(document, n, _seen) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in _seen:
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return resolve(document, target, _seen | {ref})
    return {k: resolve(document, v, _seen) for k, v in node.items()}


def protected_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every spec operation that declares a security requirement.

    The probes (``GET /health``, ``/healthz``, ``/readyz``) declare none: they answer
    without the secret.
    """
    return [(m, p) for m, p, op in operations(service_spec()) if op.get("security")]


def probe_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every spec operation served without the secret."""
    return [(m, p) for m, p, op in operations(service_spec()) if not op.get("security")]


# -- requests ---------------------------------------------------------------------------------

ROUTES = {
    "chat": "/chatbot/",
    "stream": "/chatbot/stream/",
    "file": "/chatbot/file/",
    "quiz": "/quiz/",
}


def request_kwargs(path: str, token: str) -> dict[str, Any]:
    """A valid request body for a service route that carries ``token`` (for the fake LLM)."""
    if path == ROUTES["file"]:
        return {
            "data": {"message": f"What is in this file? {token}"},
            "files": {"file": ("notes.txt", f"Some notes {token}.\n".encode(), "text/plain")},
        }
    if path == ROUTES["quiz"]:
        return {"json": {"topic": f"Volcanoes {token}", "num_questions": 2, "difficulty": "easy"}}
    if path in (ROUTES["chat"], ROUTES["stream"]):
        return {"json": {"message": f"Hello {token}", "history": []}}
    return {}


def call(
    client: httpx.Client, route: str, token: str, **kwargs: Any
) -> tuple[httpx.Response, float]:
    """POST a valid request to ``route`` (a key of ROUTES); the response and the seconds taken."""
    path = ROUTES[route]
    started = time.monotonic()
    response = client.post(path, **{**request_kwargs(path, token), **kwargs})
    return response, time.monotonic() - started


def is_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return response.status_code == 200 and content_type.startswith("text/event-stream")


# -- checks -----------------------------------------------------------------------------------


def assert_problem_event(event: Event, status: int | None = None) -> dict[str, Any]:
    """An ``error`` event whose data is an RFC 9457 problem (with ``status`` if given)."""
    assert event.event == "error", event
    body = event.json()
    assert isinstance(body, dict), body
    for key in ("type", "title", "status", "detail"):
        assert key in body, f"error event lacks {key!r}: {body}"
    assert isinstance(body["status"], int), body
    assert body["status"] >= 400, body
    if status is not None:
        assert body["status"] == status, body
    return body


def assert_failure(response: httpx.Response, status: int) -> dict[str, Any]:
    """A problem response with ``status``; for a stream that already started, one error event.

    A streaming route may answer 200 before it learns that the LLM failed; it must then
    send no token and exactly one ``error`` event carrying the status.
    """
    if not is_stream(response):
        return assert_problem(response, status)
    events, trailing = parse_stream(response.content)
    assert trailing == b"", f"stream ended inside an event: {trailing!r}"
    assert [e.event for e in events] == ["error"], [e.raw for e in events]
    return assert_problem_event(events[0], status)


# -- raw HTTP ---------------------------------------------------------------------------------


def raw_exchange(port: int, head: bytes, body: bytes, *, timeout: float) -> bytes:
    """Send ``head`` and ``body`` on a fresh connection, never finishing the body, and return
    what the server answered within ``timeout`` (up to the end of the response head)."""
    received = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        while b"\r\n\r\n" not in received:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
    return received


# -- a tiny PDF -------------------------------------------------------------------------------


def minimal_pdf(text: str) -> bytes:
    """A valid one-page PDF showing ``text`` (ASCII letters and digits), with a correct xref.

    The page content is compressed, so ``text`` is not in the file's raw bytes: only a
    reader that extracts the text can find it.
    """
    content = zlib.compress(f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode())
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
