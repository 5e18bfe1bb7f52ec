"""OPS-PROBE-1, OPS-PROBE-2: the gateway's liveness and readiness, as a supervisor asks.

A probe carries no cookie and no CSRF token: the client here is a bare one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from contract_tests.gateway.conftest import problem
from contract_tests.probes import READY_WITHIN, ask, assert_ready, checks_of
from harness.processes import LOOPBACK, free_port
from harness.system import Running

#: At the gateway a check may also be "degraded": reported, not failing readiness.
STATES = {"ok", "fail", "degraded"}


@pytest.mark.req("OPS-PROBE-1")
def test_ops_probe_1_healthz_answers_ok_without_a_session(gateway: Running) -> None:
    response, _ = ask(gateway.url, "/healthz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}


@pytest.mark.req("OPS-PROBE-2")
def test_ops_probe_2_readyz_is_ready_when_database_and_service_answer(gateway: Running) -> None:
    assert_ready(gateway.url, STATES)


@pytest.mark.req("OPS-PROBE-1")
@pytest.mark.req("OPS-PROBE-2")
def test_ops_probe_2_a_gateway_whose_service_is_down_is_alive_but_not_ready(
    start_gateway: Callable[..., Running], secret: str
) -> None:
    running = start_gateway(service_url=f"http://{LOOPBACK}:{free_port()}", connect_timeout="1")
    alive, _ = ask(running.url, "/healthz")
    assert alive.status_code == 200, "liveness must not depend on the service"
    assert alive.json() == {"status": "ok"}
    response, took = ask(running.url, "/readyz")
    checks = checks_of(problem(response, 503, secret), STATES)
    assert "fail" in checks.values(), f"a 503 names no failing check: {checks}"
    assert took < READY_WITHIN, f"readiness took {took:.2f} s"
    # Names and states only: nothing about where the service is or what it said.
    assert "Traceback" not in response.text, response.text
    assert "http://" not in response.text, response.text
