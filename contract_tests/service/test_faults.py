"""FAULT-6: every way the LLM can fail is mapped by the service, on every LLM route.

The mapping is the one of SVC-LLM-1..3 and SVC-STREAM-3: unreachable, a server error
or an answer that cannot be used -> 502; no answer within the LLM timeout -> 504; a
429 -> 503 with ``Retry-After``; a stream that already started ends with exactly one
``event: error`` at an event boundary. Never a 500.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness.client import assert_problem, parse_stream
from harness.fakes import FakeControl, new_token
from harness.processes import free_port
from harness.system import Fake, Harness, Running

from ._helpers import SECRET_HEADER, assert_problem_event, call, is_stream

#: The LLM timeout of this module's service: short, so a hang costs one second.
LLM_TIMEOUT = 1.0
#: Every call is bounded: a service that hangs fails the test instead of stalling it.
CLIENT_TIMEOUT = LLM_TIMEOUT + 5.0
FAULT_ROUTES = ["chat", "stream", "quiz"]


@dataclass(frozen=True)
class Fault:
    """A fake-LLM behaviour and the answer the spec maps it to."""

    behaviour: dict[str, Any]
    status: int
    retry_after: str | None = None  # the exact Retry-After, "*" for "any valid one"


#: Failures before the answer started: the same mapping on every route.
FAULTS: dict[str, Fault] = {
    "status-500": Fault({"status": 500}, 502),
    "status-502": Fault({"status": 502}, 502),
    "status-503": Fault({"status": 503}, 502),
    "status-429-retry-after": Fault({"status": 429, "retry_after": 7}, 503, "7"),
    "status-429-no-retry-after": Fault({"status": 429}, 503, "*"),
    "hang": Fault({"hang": True}, 504),
    "malformed": Fault({"malformed": True}, 502),
    # A proxy's HTML page where JSON (or SSE) was expected: the body is the fake's usual
    # answer, only the content type is wrong, so a service that ignores it is caught.
    "content-type-html": Fault({"content_type": "text/html; charset=utf-8"}, 502),
    "content-type-plain": Fault({"content_type": "text/plain"}, 502),
}


@pytest.fixture(scope="module")
def fault_service(harness: Harness, fake_llm_server: Fake) -> Iterator[Running]:
    """A service with a one-second LLM timeout, in front of the fake LLM."""
    running = harness.start_service(fake_llm_server.url + "/v1", llm_timeout=str(LLM_TIMEOUT))
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture
def client(fault_service: Running, secret: str) -> Iterator[httpx.Client]:
    with secret_client(fault_service.url, secret) as client:
        yield client


def secret_client(url: str, secret: str) -> httpx.Client:
    """A client that sends the secret, as the gateway does, with a bounded timeout."""
    return httpx.Client(
        base_url=url, headers={SECRET_HEADER: secret}, timeout=CLIENT_TIMEOUT, trust_env=False
    )


def assert_mapped(response: httpx.Response, status: int, retry_after: str | None) -> dict[str, Any]:
    """``status`` as problem+json, or (a stream that started) tokens then one error event."""
    assert response.status_code != 500, f"a 500: {response.text[:500]}"
    if is_stream(response):
        events, trailing = parse_stream(response.content)
        assert trailing == b"", f"stream ended inside an event: {trailing!r}"
        names = [e.event for e in events]
        assert names[-1:] == ["error"], f"stream did not end with an error: {names}"
        assert set(names[:-1]) <= {"token"}, f"not only tokens before the error: {names}"
        return assert_problem_event(events[-1], status)
    body = assert_problem(response, status)
    if retry_after is not None:
        value = response.headers.get("retry-after")
        assert value is not None, "503 without Retry-After"
        if retry_after == "*":
            assert value.strip().isdigit(), f"Retry-After {value!r} is not a number of seconds"
        else:
            assert value == retry_after, f"Retry-After {value!r}, the LLM said {retry_after!r}"
    return body


@pytest.mark.req("FAULT-6")
@pytest.mark.parametrize("route", FAULT_ROUTES)
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_fault_6_llm_failure_is_mapped_as_the_spec_says(
    client: httpx.Client, fake_llm: FakeControl, route: str, fault: str
) -> None:
    case = FAULTS[fault]
    token = fake_llm.behave(**case.behaviour)
    response, elapsed = call(client, route, token)
    assert_mapped(response, case.status, case.retry_after)
    assert fake_llm.requests(token), "the LLM was never called: the fault was not exercised"
    if case.status == 504:
        assert elapsed <= LLM_TIMEOUT + 1.0, (
            f"504 after {elapsed:.2f}s (LLM timeout {LLM_TIMEOUT}s)"
        )


@pytest.mark.req("FAULT-6")
@pytest.mark.parametrize("route", FAULT_ROUTES)
def test_fault_6_refused_llm_connection_is_502(
    secret: str, route: str, refused_service: Running
) -> None:
    with secret_client(refused_service.url, secret) as client:
        response, _ = call(client, route, new_token())
    assert_mapped(response, 502, None)


@pytest.fixture(scope="module")
def refused_service(harness: Harness) -> Iterator[Running]:
    """A service whose LLM URL is a loopback port where nothing listens."""
    running = harness.start_service(f"http://127.0.0.1:{free_port()}/v1")
    try:
        yield running
    finally:
        running.process.stop()


@pytest.mark.req("FAULT-6")
@pytest.mark.parametrize("mode", ["drop", "error_event"])
@pytest.mark.parametrize("route", FAULT_ROUTES)
def test_fault_6_llm_failing_mid_answer_is_502_or_one_error_event(
    client: httpx.Client, fake_llm: FakeControl, route: str, mode: str
) -> None:
    token = fake_llm.behave(tokens=6, fail_after=3, fail_mode=mode)
    started = time.monotonic()
    response, _ = call(client, route, token)
    assert time.monotonic() - started <= LLM_TIMEOUT + 1.0, "the failure was not noticed at once"
    if route != "stream":
        assert_problem(response, 502)
        return
    # The first tokens were already relayed: they stay, then exactly one error event.
    assert is_stream(response), f"{response.status_code}: {response.text[:300]}"
    events, trailing = parse_stream(response.content)
    assert trailing == b"", f"stream ended inside an event: {trailing!r}"
    names = [e.event for e in events]
    assert names == ["token"] * names.count("token") + ["error"], names
    assert names.count("token") >= 1, f"no token reached the caller before the failure: {names}"
    assert_problem_event(events[-1], 502)


@pytest.mark.req("FAULT-6")
def test_fault_6_stream_answered_with_json_is_502(
    client: httpx.Client, fake_llm: FakeControl
) -> None:
    # A stream request answered with a content type the stream route cannot relay.
    token = fake_llm.behave(content_type="application/json")
    response, _ = call(client, "stream", token)
    assert_mapped(response, 502, None)
