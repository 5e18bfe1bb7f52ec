"""The service's own description (SVC-AUTH-6, SVC-OAS-1)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from openapi_spec_validator import validate

from fastapi_service.export_openapi import DEFAULT_OUTPUT, openapi_document, render

OPERATIONS = [
    ("/chatbot/", "post"),
    ("/chatbot/stream/", "post"),
    ("/chatbot/file/", "post"),
    ("/quiz/", "post"),
]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def test_spec_file_is_the_generated_document(document: dict[str, Any]) -> None:
    text = DEFAULT_OUTPUT.read_text(encoding="utf-8")
    assert text == render(document), "run: python -m fastapi_service.export_openapi"
    assert yaml.safe_load(text) == document


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_served_document_matches(app: FastAPI, document: dict[str, Any]) -> None:
    assert app.openapi() == document


def test_secret_is_an_api_key_scheme_on_every_operation_but_health(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "InternalSecret": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Internal-Secret",
            "description": "The secret shared by the gateway and the service.",
        }
    }
    for path, method in OPERATIONS:
        assert document["paths"][path][method]["security"] == [{"InternalSecret": []}]
    assert "security" not in document["paths"]["/health"]["get"]


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_errors_are_documented_as_problems(
    document: dict[str, Any], path: str, method: str
) -> None:
    responses = document["paths"][path][method]["responses"]
    for status in ("401", "403", "413", "415", "422", "502", "503", "504"):
        content = responses[status]["content"]
        assert list(content) == ["application/problem+json"], (path, status)
    assert "Retry-After" in responses["503"]["headers"]
    assert responses["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationProblem"
    }


def test_stream_success_is_an_event_stream(document: dict[str, Any]) -> None:
    ok = document["paths"]["/chatbot/stream/"]["post"]["responses"]["200"]
    assert list(ok["content"]) == ["text/event-stream"]


def test_problem_schema_requires_the_rfc_9457_members(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
