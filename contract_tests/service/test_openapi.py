"""SVC-OAS-1: the service's /openapi.json describes the API of spec/service.openapi.yaml.

Both documents are reduced to what a client depends on (operations, parameters,
request media types and required fields, response codes, security), with every
$ref resolved, so titles, descriptions, ordering and schema names do not matter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from ._helpers import operations, resolve, service_spec

Key = tuple[str, str]  # (METHOD, path with parameter names blanked)


def _scheme(scheme: Mapping[str, Any]) -> tuple[str, ...]:
    kind = str(scheme.get("type", "")).lower()
    if kind == "apikey":
        name = str(scheme.get("name", ""))
        where = str(scheme.get("in", ""))
        return (kind, where, name.lower() if where == "header" else name)
    if kind == "http":
        return (kind, str(scheme.get("scheme", "")).lower())
    return (kind,)


def _required_fields(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        required |= set(_required_fields(part))
    return sorted(required)


class Normalized:
    """What a client of one OpenAPI document depends on."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        schemes = resolve(document, document.get("components", {}).get("securitySchemes", {}))
        self.schemes = {name: _scheme(s) for name, s in schemes.items()}
        secret_headers = {s[2] for s in self.schemes.values() if s[:2] == ("apikey", "header")}
        self.operations: dict[Key, dict[str, Any]] = {}
        for method, path, op in operations(document):
            key = (method, re.sub(r"\{[^}]*\}", "{}", path))
            item = document["paths"][path]
            params = {}
            for p in resolve(document, [*item.get("parameters", []), *op.get("parameters", [])]):
                where = p.get("in")
                name = p["name"].lower() if where == "header" else p["name"]
                params[name, where] = bool(p.get("required", False) or where == "path")
            self.operations[key] = {
                "parameters": sorted(
                    (name, where, required)
                    for (name, where), required in params.items()
                    if not (where == "header" and name in secret_headers)
                ),
                "requestBody": self._body(resolve(document, op.get("requestBody"))),
                "responses": sorted(str(code) for code in op.get("responses", {})),
                "security": self._security(op.get("security", document.get("security", []))),
            }

    @staticmethod
    def _body(body: Any) -> dict[str, Any] | None:
        if not body:
            return None
        content = {
            media.split(";")[0].strip().lower(): _required_fields(value.get("schema"))
            for media, value in body.get("content", {}).items()
        }
        return {"required": bool(body.get("required", False)), "content": content}

    def _security(self, requirements: list[dict[str, Any]]) -> list[list[tuple[str, ...]]]:
        alternatives = {
            tuple(sorted(self.schemes.get(name, ("undeclared", name)) for name in alternative))
            for alternative in requirements
        }
        if () in alternatives:  # an empty alternative makes authentication optional
            return []
        return sorted(list(a) for a in alternatives)


@pytest.fixture
def spec() -> Normalized:
    return Normalized(service_spec())


@pytest.fixture
def live(service_client: httpx.Client) -> Normalized:
    response = service_client.get("/openapi.json")
    assert response.status_code == 200, response.text
    return Normalized(response.json())


def _differences(spec: Normalized, live: Normalized, aspect: str) -> list[str]:
    return [
        f"{method} {path}: spec {spec.operations[method, path][aspect]!r}, "
        f"service {live.operations[method, path][aspect]!r}"
        for method, path in sorted(spec.operations.keys() & live.operations.keys())
        if spec.operations[method, path][aspect] != live.operations[method, path][aspect]
    ]


@pytest.mark.req("SVC-OAS-1")
def test_svc_oas_1_same_operations(spec: Normalized, live: Normalized) -> None:
    missing = sorted(spec.operations.keys() - live.operations.keys())
    extra = sorted(live.operations.keys() - spec.operations.keys())
    assert not missing, f"operations of the spec missing from the service: {missing}"
    assert not extra, f"operations the spec does not have: {extra}"


@pytest.mark.req("SVC-OAS-1")
@pytest.mark.parametrize("aspect", ["parameters", "requestBody", "responses", "security"])
def test_svc_oas_1_same_operation_details(spec: Normalized, live: Normalized, aspect: str) -> None:
    differences = _differences(spec, live, aspect)
    assert not differences, f"{aspect} differ:\n" + "\n".join(differences)


@pytest.mark.req("SVC-OAS-1")
def test_svc_oas_1_same_security_schemes(spec: Normalized, live: Normalized) -> None:
    assert sorted(set(spec.schemes.values())) == sorted(set(live.schemes.values()))
