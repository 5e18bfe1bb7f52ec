"""Helpers shared by the service's unit tests: settings, LLM bodies, a raw ASGI caller."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx

from fastapi_service.core.config import Settings

SECRET = "test-secret-current"
PREVIOUS = "test-secret-previous"
LLM_BASE = "http://127.0.0.1:9/v1"
LLM_URL = f"{LLM_BASE}/chat/completions"
API_KEY = "sk-test-key-0123456789"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "secret": SECRET,
        "previous_secret": PREVIOUS,
        "llm_base_url": LLM_BASE,
        "llm_api_key": API_KEY,
        "llm_model": "test-model",
        "llm_timeout": 2.0,
        "ping_interval": 15.0,
    }
    values.update(overrides)
    return Settings(**values)


def completion(text: str, *, prompt: int = 3, completion_tokens: int = 2) -> dict[str, Any]:
    """An OpenAI chat-completions body."""
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }


def sse_lines(tokens: list[str], *, usage: bool = True, done: bool = True) -> list[bytes]:
    """An OpenAI streaming body, one bytes chunk per event."""
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        *({"choices": [{"index": 0, "delta": {"content": t}}]} for t in tokens),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    if usage:
        chunks.append(
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 4,
                    "completion_tokens": len(tokens),
                    "total_tokens": 4 + len(tokens),
                },
            }
        )
    lines = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
    if done:
        lines.append(b"data: [DONE]\n\n")
    return lines


def sent_payload(route: respx.Route, index: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[index].request.content)


def parse_events(body: bytes) -> list[tuple[str, Any]]:
    """(event, data) pairs of an SSE body; comments are returned as ("comment", text)."""
    events: list[tuple[str, Any]] = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            events.append(("comment", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    assert "Traceback" not in response.text
    for secret in (SECRET, PREVIOUS, API_KEY):
        assert secret not in response.text
        assert all(secret not in value for value in response.headers.values())
    return body


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    messages: list[dict[str, Any]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


async def call_raw(
    app: Any,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    body: bytes | None = b"",
) -> RawResponse:
    """Call an ASGI app with exact raw headers. `body=None` fails the test if it is read."""

    async def receive() -> dict[str, Any]:
        if body is None:
            pytest.fail("the request body was read")
        return {"type": "http.request", "body": body, "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return RawResponse(start["status"], list(start["headers"]), content, sent)
