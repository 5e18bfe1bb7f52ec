"""PROB-1, PROB-2 and SEC-3, judged over every error answer the suites saw in this run.

Tests about other rules assert status codes only and record each error answer
(harness/observed.py). This module runs after them (``RUN_LAST``) and judges the
record: one failure per rule, listing the offending answers with the test that
saw them. It first provokes a few errors of its own at the gateway and the
service, so it judges something even when run alone.
"""

from __future__ import annotations

import pytest

from contract_tests.gateway.conftest import anonymous, problem
from harness import observed
from harness.client import assert_problem, http_client
from harness.spec import proxied_routes
from harness.system import Running

#: Collected after every other test (contract_tests/conftest.py).
RUN_LAST = True

#: Service operations that need the secret (spec/service.openapi.yaml), by path.
SERVICE_PATHS = sorted({route.upstream for route in proxied_routes(include_optional=True)})


def provoke_gateway_errors(gateway: Running, secret: str) -> None:
    """Answers every gateway gives: 401 without a session, 405, 404."""
    with anonymous(gateway.url) as client:
        for route in proxied_routes():
            problem(route.call(client, "prob-observed"), 401, secret)
        problem(client.get(proxied_routes()[0].path), 405, secret)
        problem(client.get("/api/no-such-route/"), 404, secret)


def provoke_service_errors(service: Running, secret: str) -> None:
    """Answers every service gives: 401 without the secret, 403 with a wrong one."""
    with http_client(service.url) as client:
        for path in SERVICE_PATHS:
            assert_problem(client.post(path, json={"message": "x"}), 401)
            wrong = {"X-Internal-Secret": "prob-observed-wrong"}
            assert_problem(client.post(path, json={"message": "x"}, headers=wrong), 403)


@pytest.fixture(scope="module")
def provoked(gateway: Running, service: Running, secret: str) -> None:
    provoke_gateway_errors(gateway, secret)
    provoke_service_errors(service, secret)


def judge(rule: str) -> None:
    found = observed.seen(rule)
    assert found, f"no answer was checked against {rule}"
    assert not any(o.violations for o in found), observed.summary(found, rule)


@pytest.mark.req("PROB-1")
@pytest.mark.usefixtures("provoked")
def test_prob_1_every_error_answer_the_suites_saw_was_a_problem_document() -> None:
    judge("PROB-1")


@pytest.mark.req("PROB-2")
@pytest.mark.usefixtures("provoked")
def test_prob_2_no_error_answer_the_suites_saw_leaked_a_secret_or_a_trace() -> None:
    judge("PROB-2")


@pytest.mark.req("SEC-3")
@pytest.mark.usefixtures("provoked")
def test_sec_3_every_gateway_error_the_suites_saw_carried_nosniff_and_frame_deny() -> None:
    judge("SEC-3")
