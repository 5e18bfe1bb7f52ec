"""OPS-PROBE-1..3 at the service: liveness, readiness (the LLM answers), and SIGTERM.

The probes are the operations the service's OpenAPI document secures with nothing
(``probe_operations``): every one answers without the secret.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from contract_tests.probes import (
    READY_WITHIN,
    ask,
    assert_not_ready_after_sigterm,
    assert_ready,
    checks_of,
    readiness_answers,
)
from contract_tests.service._helpers import probe_operations
from harness.client import assert_problem, http_client
from harness.fakes import FakeControl
from harness.processes import LOOPBACK, free_port
from harness.system import Running

STATES = {"ok", "fail"}


@pytest.mark.req("OPS-PROBE-1")
def test_ops_probe_1_the_probes_need_no_secret(anon_client: httpx.Client) -> None:
    probes = {path for method, path in probe_operations() if method == "GET"}
    assert {"/healthz", "/readyz"} <= probes, f"the spec's unsecured operations: {probes}"
    response = anon_client.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}


@pytest.mark.req("OPS-PROBE-2")
def test_ops_probe_2_readyz_is_ready_when_the_llm_answers(service: Running) -> None:
    assert_ready(service.url, STATES)


@pytest.mark.req("OPS-PROBE-1")
@pytest.mark.req("OPS-PROBE-2")
def test_ops_probe_2_a_service_whose_llm_is_down_is_alive_but_not_ready(
    start_service: Callable[..., Running],
) -> None:
    running = start_service(llm_url=f"http://{LOOPBACK}:{free_port()}/v1")
    alive, _ = ask(running.url, "/healthz")
    assert alive.status_code == 200, "liveness must not depend on the LLM"
    response, took = ask(running.url, "/readyz")
    body = assert_problem(response, 503)
    assert "fail" in checks_of(body, STATES).values(), body
    assert took < READY_WITHIN, f"readiness took {took:.2f} s"


@pytest.mark.req("OPS-PROBE-3")
def test_ops_probe_3_readiness_fails_from_the_moment_of_sigterm(
    start_service: Callable[..., Running], secret: str, fake_llm: FakeControl
) -> None:
    running = start_service()
    token = fake_llm.behave(tokens=3, hold_after=1)  # keeps the service draining
    headers = {"X-Internal-Secret": secret, "X-User-Id": "7"}
    with (
        http_client(running.url) as streamer,
        streamer.stream(
            "POST", "/chatbot/stream/", headers=headers, json={"message": token}
        ) as stream,
    ):
        assert stream.status_code == 200
        fake_llm.wait_for(lambda records: len(records) == 1, match=token)
        running.process.signal(signal.SIGTERM)
        answers = readiness_answers(running.url, time.monotonic() + 0.5)
        fake_llm.release(token)
    assert_not_ready_after_sigterm(answers)
