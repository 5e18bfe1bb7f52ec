"""FUZZ-2: schemathesis against the implementation's gateway, from spec/gateway.openapi.yaml.

The same run as FUZZ-1 (settings of /schemathesis.toml) with a logged-in browser
session: the session and CSRF cookies plus the ``X-CSRFToken`` header on every case
(see fuzz_tests/schemas.py). The gateway is in front of the implementation's own
service and the fake LLM, so bodies the gateway relays are validated by the real
service, as in production. ``POST /api/auth/logout/`` is left out: it would end the
session every later case needs (FUZZ-3 covers it, and the contract suites test it).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from schemathesis import Case

from fuzz_tests.report import FuzzReport
from fuzz_tests.schemas import CHECKS, GATEWAY_SCHEMA, MAX_EXAMPLES, apply_session
from harness.client import Session
from harness.spec import proxied_routes

TIMEOUT = 10.0


@pytest.mark.req("FUZZ-2")
@GATEWAY_SCHEMA.exclude(operation_id="auth_logout").parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # only the seed decides what runs: no replay of earlier failures
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_2_gateway_conforms_to_its_openapi_document(
    case: Case, gateway_session: Session, fuzz_report: FuzzReport
) -> None:
    fuzz_report.record("gateway", case)
    apply_session(case, gateway_session)
    response = case.call_and_validate(
        base_url=gateway_session.base_url, checks=CHECKS, timeout=TIMEOUT
    )
    fuzz_report.record_status("gateway", case, response.status_code)


@pytest.mark.req("FUZZ-2")
def test_fuzz_2_positive_cases_got_through_to_the_service(fuzz_report: FuzzReport) -> None:
    """The run above was not vacuous: logged in, valid cases got past CSRF and the session."""
    answers = fuzz_report.statuses.get("gateway", {})
    assert answers, "the FUZZ-2 run above did not run"
    expected = {
        "GET /api/auth/me/": 200,
        "POST /api/auth/login/": 401,  # random credentials reached the password check
        **{f"{r.method} {r.path}": 200 for r in proxied_routes()},
    }
    for label, status in expected.items():
        got = answers.get(label, {})
        assert got.get(status), f"{label} never answered {status}: {got}"
