"""FUZZ-1: schemathesis against the implementation's service, from spec/service.openapi.yaml.

Every operation, positive and negative data, the explicit examples, the coverage phase
and at least 200 fuzzed examples per operation, with the seed of /schemathesis.toml
(printed in the summary and written to reports/fuzz.md), and the eight checks FUZZ-1
names. The service talks to the fake LLM, which answers every call deterministically.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from schemathesis import Case

from fuzz_tests.report import FuzzReport
from fuzz_tests.schemas import CHECKS, MAX_EXAMPLES, SERVICE_SCHEMA
from harness.spec import proxied_routes
from harness.system import Running

TIMEOUT = 10.0


@pytest.mark.req("FUZZ-1")
@SERVICE_SCHEMA.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # only the seed decides what runs: no replay of earlier failures
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_1_service_conforms_to_its_openapi_document(
    case: Case, service: Running, fuzz_report: FuzzReport
) -> None:
    fuzz_report.record("service", case)
    response = case.call_and_validate(base_url=service.url, checks=CHECKS, timeout=TIMEOUT)
    fuzz_report.record_status("service", case, response.status_code)


@pytest.mark.req("FUZZ-1")
def test_fuzz_1_positive_cases_got_through_to_the_llm(fuzz_report: FuzzReport) -> None:
    """The run above was not vacuous: with the secret, valid cases were answered 200 on
    every service route the gateway proxies to (x-upstream in spec/gateway.openapi.yaml)."""
    answers = fuzz_report.statuses.get("service", {})
    assert answers, "the FUZZ-1 run above did not run"
    for label in sorted({f"{r.method} {r.upstream}" for r in proxied_routes()}):
        assert answers.get(label, {}).get(200), f"{label} never answered 200: {answers.get(label)}"
