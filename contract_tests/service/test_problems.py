"""PROB-1 and PROB-2 at the service: every error is a problem, no response leaks anything."""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness.client import assert_no_leak, assert_problem_document
from harness.fakes import FakeControl, new_token

from ._helpers import SECRET_HEADER, MiB

JSON = {"Content-Type": "application/json"}


@dataclass
class Ctx:
    client: httpx.Client  # sends the secret
    anon: httpx.Client  # sends none
    fake_llm: FakeControl
    secret: str

    def chat(self, **kwargs: Any) -> httpx.Response:
        return self.anon.post("/chatbot/", json={"message": new_token()}, **kwargs)

    def upload(self, name: str, content: bytes, content_type: str) -> httpx.Response:
        files = {"file": (name, content, content_type)}
        return self.client.post("/chatbot/file/", data={"message": "what?"}, files=files)

    def llm(self, path: str, **behaviour: object) -> httpx.Response:
        token = self.fake_llm.behave(**behaviour)
        if path == "/quiz/":
            body = {"topic": token, "num_questions": 2, "difficulty": "easy"}
            return self.client.post(path, json=body, timeout=15)
        return self.client.post(path, json={"message": token}, timeout=15)


Expected = int | Container[int]
CLIENT_ERROR = range(400, 500)


@dataclass(frozen=True)
class Scenario:
    name: str
    expected: Expected  # a status, or the statuses allowed
    send: Callable[[Ctx], httpx.Response]


SCENARIOS = [
    # authentication
    Scenario("missing-secret", 401, lambda c: c.chat()),
    Scenario("empty-secret", 401, lambda c: c.chat(headers={SECRET_HEADER: ""})),
    Scenario("wrong-secret", 403, lambda c: c.chat(headers={SECRET_HEADER: c.secret[::-1]})),
    Scenario(
        "duplicate-secret",
        403,
        lambda c: c.chat(headers=[(SECRET_HEADER, c.secret), (SECRET_HEADER, "x")]),
    ),
    Scenario("non-ascii-secret", 403, lambda c: c.chat(headers=[(SECRET_HEADER, b"\xc3\xa9")])),
    Scenario("openapi-without-secret", 401, lambda c: c.anon.get("/openapi.json")),
    Scenario("docs-without-secret", 401, lambda c: c.anon.get("/docs")),
    # routing
    Scenario("unknown-path", 404, lambda c: c.client.get("/no/such/route")),
    Scenario("wrong-method", 405, lambda c: c.client.get("/chatbot/")),
    # bodies
    Scenario(
        "invalid-json", (400, 422), lambda c: c.client.post("/chatbot/", content=b"{", headers=JSON)
    ),
    Scenario("schema-mismatch", 422, lambda c: c.client.post("/chatbot/", json={"message": 5})),
    Scenario(
        "text-plain-body",
        CLIENT_ERROR,
        lambda c: c.client.post(
            "/chatbot/", content=b"hello", headers={"Content-Type": "text/plain"}
        ),
    ),
    Scenario(
        "non-utf8-json",
        CLIENT_ERROR,
        lambda c: c.client.post("/chatbot/", content=b'{"message": "\xff\xfe"}', headers=JSON),
    ),
    Scenario(
        "deeply-nested-json",
        CLIENT_ERROR,
        lambda c: c.client.post("/chatbot/", content=b"[" * 100_000, headers=JSON),
    ),
    Scenario(
        "nan-and-infinity",
        CLIENT_ERROR,
        lambda c: c.client.post(
            "/quiz/", content=b'{"topic": "t", "num_questions": NaN}', headers=JSON
        ),
    ),
    Scenario(
        "huge-number",
        CLIENT_ERROR,
        lambda c: c.client.post(
            "/quiz/", content=b'{"topic": "t", "num_questions": 1e999}', headers=JSON
        ),
    ),
    Scenario(
        "quiz-out-of-bounds",
        422,
        lambda c: c.client.post("/quiz/", json={"topic": "t", "num_questions": 99}),
    ),
    # uploads
    Scenario(
        "file-too-large", 413, lambda c: c.upload("big.txt", b"a" * (10 * MiB + 1), "text/plain")
    ),
    Scenario("file-wrong-type", 415, lambda c: c.upload("x.png", b"\x89PNG\r\n", "image/png")),
    Scenario(
        "broken-pdf",
        CLIENT_ERROR,
        lambda c: c.upload("x.pdf", b"%PDF-1.4\nnot a pdf", "application/pdf"),
    ),
    Scenario(
        "multipart-without-boundary",
        CLIENT_ERROR,
        lambda c: c.client.post(
            "/chatbot/file/", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}
        ),
    ),
    Scenario(
        "multipart-without-file",
        CLIENT_ERROR,
        lambda c: c.client.post("/chatbot/file/", files={"message": (None, b"what?")}),
    ),
    Scenario(
        "file-route-with-json",
        CLIENT_ERROR,
        lambda c: c.client.post("/chatbot/file/", json={"message": "x"}),
    ),
    # the LLM failing
    Scenario("llm-server-error", 502, lambda c: c.llm("/chatbot/", status=500)),
    Scenario("llm-rate-limit", 503, lambda c: c.llm("/quiz/", status=429, retry_after=3)),
    Scenario("llm-malformed", 502, lambda c: c.llm("/chatbot/", malformed=True)),
    Scenario("llm-hang", 504, lambda c: c.llm("/chatbot/", hang=True)),
    Scenario("llm-invalid-quiz", 502, lambda c: c.llm("/quiz/", content="no quiz")),
]

# Responses that are not errors but must not leak either (PROB-2 covers every response).
SUCCESSES = [
    Scenario("health", 200, lambda c: c.anon.get("/health")),
    Scenario("openapi", 200, lambda c: c.client.get("/openapi.json")),
    Scenario("docs", 200, lambda c: c.client.get("/docs")),
    Scenario("stream-failing-midway", 200, lambda c: c.llm("/chatbot/stream/", fail_after=1)),
]


@pytest.fixture
def ctx(
    service_client: httpx.Client, anon_client: httpx.Client, fake_llm: FakeControl, secret: str
) -> Ctx:
    return Ctx(service_client, anon_client, fake_llm, secret)


def _allowed(expected: Expected, status: int) -> bool:
    return status == expected if isinstance(expected, int) else status in expected


@pytest.mark.req("PROB-1")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_prob_1_service_error_is_problem_json(ctx: Ctx, scenario: Scenario) -> None:
    response = scenario.send(ctx)
    assert _allowed(scenario.expected, response.status_code), (
        f"expected {scenario.expected}, got {response.status_code}: {response.text[:500]}"
    )
    assert_problem_document(response, response.status_code)


@pytest.mark.req("PROB-2")
@pytest.mark.parametrize("scenario", SCENARIOS + SUCCESSES, ids=lambda s: s.name)
def test_prob_2_service_response_leaks_no_secret_key_or_trace(
    ctx: Ctx, scenario: Scenario, hidden: tuple[str, str]
) -> None:
    response = scenario.send(ctx)
    assert_no_leak(response, *hidden)
