"""The spec itself: requirements parse, every MUST has a test, the OpenAPI documents validate,
and the example bodies the suites send (spec/examples.yaml) are valid and complete."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from harness.requirements import SPEC, load_requirements, marked_ids
from harness.spec import EXAMPLES, GATEWAY_DOCUMENT, METHODS, gateway_spec


def test_requirements_parse_with_unique_ids() -> None:
    requirements = load_requirements()
    assert len(requirements) >= 40
    assert all(r.level in ("MUST", "SHOULD") for r in requirements.values())


def test_every_must_requirement_has_a_test() -> None:
    marked = marked_ids()
    untested = [
        rid for rid, r in load_requirements().items() if r.level == "MUST" and rid not in marked
    ]
    assert not untested, f"MUST requirements without a test: {untested}"


def test_every_marked_id_is_in_the_spec() -> None:
    unknown = set(marked_ids()) - set(load_requirements())
    assert not unknown, f"tests name requirements that spec/requirements.md lacks: {unknown}"


@pytest.mark.parametrize("name", ["gateway.openapi.yaml", "service.openapi.yaml"])
def test_openapi_document_validates(name: str) -> None:
    document = yaml.safe_load((SPEC.parent / name).read_text(encoding="utf-8"))
    validate(document)
    assert document["openapi"].startswith("3.1")


# -- spec/examples.yaml: the bodies the suites send --------------------------------------------
def _gateway() -> dict[str, Any]:
    return yaml.safe_load(GATEWAY_DOCUMENT.read_text(encoding="utf-8"))


def _examples() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLES.read_text(encoding="utf-8"))


def _proxied_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation with x-upstream, optional ones too."""
    return [
        (method, path, item[method])
        for path, item in document["paths"].items()
        for method in METHODS
        if "x-upstream" in item.get(method, {})
    ]


@pytest.mark.parametrize("component", sorted(_examples()))
def test_every_example_validates_against_its_schema(component: str) -> None:
    document = _gateway()
    media_type = next(iter(_examples()[component]))
    content = document["components"]["requestBodies"][component]["content"]
    assert media_type in content, f"{component}: {media_type} is not one of {sorted(content)}"
    # The whole document is the resource, so the schema's own $refs resolve in it.
    registry = Registry().with_resource(
        "urn:gateway", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    pointer = f"#/components/requestBodies/{component}/content/{media_type.replace('/', '~1')}"
    validator = Draft202012Validator({"$ref": f"urn:gateway{pointer}/schema"}, registry=registry)
    example = gateway_spec().examples[component]
    errors = [e.message for e in validator.iter_errors(example.instance("tok-0123456789ab"))]
    assert not errors, f"spec/examples.yaml: {component} is not valid: {errors}"
    allowed = content[media_type].get("encoding", {})
    for name, (_, _, content_type) in example.files("t").items():
        types = allowed.get(name, {}).get("contentType")
        if types:
            assert content_type in [t.strip() for t in types.split(",")], (name, content_type)


def test_every_proxied_operation_s_request_body_has_an_example() -> None:
    examples = _examples()
    missing = []
    for method, path, operation in _proxied_operations(_gateway()):
        ref = operation.get("requestBody", {}).get("$ref", "")
        component = ref.removeprefix("#/components/requestBodies/")
        if not ref.startswith("#/components/requestBodies/") or component not in examples:
            missing.append(f"{method.upper()} {path} ({ref or 'no requestBody $ref'})")
    assert not missing, f"proxied operations without an example body: {missing}"


def test_every_example_is_the_body_of_a_proxied_operation() -> None:
    used = {
        operation["requestBody"]["$ref"].rsplit("/", 1)[-1]
        for _, _, operation in _proxied_operations(_gateway())
    }
    assert set(_examples()) <= used, (
        f"examples no proxied operation uses: {set(_examples()) - used}"
    )


def test_every_upstream_is_an_operation_of_the_service() -> None:
    service = yaml.safe_load((SPEC.parent / "service.openapi.yaml").read_text(encoding="utf-8"))
    unknown = [
        f"{method.upper()} {path} -> {operation['x-upstream']}"
        for method, path, operation in _proxied_operations(_gateway())
        if method not in service["paths"].get(operation["x-upstream"], {})
    ]
    assert not unknown, f"x-upstream names no operation of spec/service.openapi.yaml: {unknown}"
