"""SVC-LLM: how the service talks to the LLM and maps its failures."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from harness.client import assert_problem, http_client, parse_stream
from harness.fakes import FakeControl, header_values, new_token
from harness.processes import free_port
from harness.system import Harness, Running

from ._helpers import ROUTES, SECRET_HEADER, assert_failure, assert_problem_event, call

ALL_ROUTES = list(ROUTES)
SLOW = 15.0  # client timeout for calls that wait for the service's 3 s LLM timeout


# -- SVC-LLM-1 ----------------------------------------------------------------------------------
@pytest.mark.req("SVC-LLM-1")
def test_svc_llm_1_unreachable_llm_is_502(
    start_service: Callable[..., Running], secret: str
) -> None:
    running = start_service(llm_url=f"http://127.0.0.1:{free_port()}/v1")
    with http_client(running.url, headers={SECRET_HEADER: secret}) as client:
        for route in ALL_ROUTES:
            response, _ = call(client, route, new_token(), timeout=SLOW)
            assert_failure(response, 502)


@pytest.mark.req("SVC-LLM-1")
@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("route", ALL_ROUTES)
def test_svc_llm_1_llm_server_error_is_502(
    service_client: httpx.Client, fake_llm: FakeControl, route: str, status: int
) -> None:
    token = fake_llm.behave(status=status)
    response, _ = call(service_client, route, token)
    assert_failure(response, 502)


@pytest.mark.req("SVC-LLM-1")
@pytest.mark.parametrize("route", ALL_ROUTES)
def test_svc_llm_1_malformed_llm_answer_is_502(
    service_client: httpx.Client, fake_llm: FakeControl, route: str
) -> None:
    token = fake_llm.behave(malformed=True)
    response, _ = call(service_client, route, token)
    assert_failure(response, 502)


@pytest.mark.req("SVC-LLM-1")
@pytest.mark.parametrize("route", ["chat", "file", "quiz"])
def test_svc_llm_1_llm_dropping_the_connection_mid_answer_is_502(
    service_client: httpx.Client, fake_llm: FakeControl, route: str
) -> None:
    token = fake_llm.behave(fail_after=1, fail_mode="drop")
    response, _ = call(service_client, route, token)
    assert_problem(response, 502)


# -- SVC-LLM-2 ----------------------------------------------------------------------------------
@pytest.mark.req("SVC-LLM-2")
@pytest.mark.parametrize("route", ALL_ROUTES)
def test_svc_llm_2_hanging_llm_is_504_after_the_timeout(
    service_client: httpx.Client, fake_llm: FakeControl, route: str
) -> None:
    token = fake_llm.behave(hang=True)
    response, elapsed = call(service_client, route, token, timeout=SLOW)
    assert_failure(response, 504)
    assert elapsed < 10, f"the 3 s LLM timeout took {elapsed:.1f} s"


@pytest.mark.req("SVC-LLM-2")
@pytest.mark.parametrize("route", ["chat", "stream"])
def test_svc_llm_2_first_token_later_than_the_timeout_is_504(
    service_client: httpx.Client, fake_llm: FakeControl, route: str
) -> None:
    token = fake_llm.behave(first_token_delay=8)
    response, elapsed = call(service_client, route, token, timeout=SLOW)
    assert_failure(response, 504)
    assert elapsed < 7.5, f"the 3 s LLM timeout took {elapsed:.1f} s"


@pytest.mark.req("SVC-LLM-2")
def test_svc_llm_2_stalled_stream_ends_with_a_504_error_event(
    service_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(tokens=3, token_delay=8)
    response, elapsed = call(service_client, "stream", token, timeout=SLOW)
    assert response.status_code == 200, response.text
    events, trailing = parse_stream(response.content)
    assert trailing == b"", trailing
    assert [e.event for e in events if e.event != "token"] == ["error"], [e.raw for e in events]
    assert events[-1].event == "error"
    assert_problem_event(events[-1], 504)
    assert elapsed < 7.5, f"the 3 s LLM timeout took {elapsed:.1f} s"


@pytest.mark.req("SVC-LLM-2")
@pytest.mark.parametrize(
    ("route", "behaviour"),
    [("chat", {"first_token_delay": 1.5}), ("stream", {"tokens": 4, "token_delay": 1.2})],
    ids=["slow-first-answer", "slow-stream"],
)
def test_svc_llm_2_slow_llm_within_the_timeout_succeeds(
    service_client: httpx.Client, fake_llm: FakeControl, route: str, behaviour: dict[str, object]
) -> None:
    # Each wait is under the 3 s timeout; the stream as a whole takes longer than 3 s.
    token = fake_llm.behave(**behaviour)
    response, _ = call(service_client, route, token, timeout=SLOW)
    assert response.status_code == 200, response.text
    if route == "stream":
        events, _ = parse_stream(response.content)
        assert events[-1].event == "done", [e.raw for e in events]


# -- SVC-LLM-3 ----------------------------------------------------------------------------------
@pytest.mark.req("SVC-LLM-3")
@pytest.mark.parametrize("retry_after", [7, None], ids=["llm-says-7", "llm-says-nothing"])
@pytest.mark.parametrize("route", ALL_ROUTES)
def test_svc_llm_3_llm_rate_limit_is_503_with_retry_after(
    service_client: httpx.Client, fake_llm: FakeControl, route: str, retry_after: int | None
) -> None:
    token = fake_llm.behave(status=429, retry_after=retry_after)
    response, _ = call(service_client, route, token)
    assert_problem(response, 503)
    value = response.headers.get("retry-after")
    assert value is not None, f"503 without Retry-After: {dict(response.headers)}"
    assert value.strip().isdigit(), f"Retry-After is not a number of seconds: {value!r}"


# -- SVC-LLM-4 ----------------------------------------------------------------------------------
@pytest.mark.req("SVC-LLM-4")
@pytest.mark.parametrize("route", ALL_ROUTES)
def test_svc_llm_4_user_id_reaches_the_llm_as_user(
    service_client: httpx.Client, fake_llm: FakeControl, route: str
) -> None:
    token = fake_llm.behave()
    response, _ = call(service_client, route, token, headers={"X-User-Id": "42"})
    assert response.status_code == 200, response.text
    (record,) = fake_llm.requests(token)
    assert record["user"] == "42", record["json"]


# -- SVC-LLM-5 ----------------------------------------------------------------------------------
@pytest.mark.req("SVC-LLM-5")
@pytest.mark.parametrize("route", ALL_ROUTES)
def test_svc_llm_5_llm_is_spoken_to_as_openai_chat_completions(
    service_client: httpx.Client, fake_llm: FakeControl, harness: Harness, route: str
) -> None:
    token = fake_llm.behave()
    response, _ = call(service_client, route, token)
    assert response.status_code == 200, response.text
    (record,) = fake_llm.requests(token)
    assert (record["method"], record["path"]) == ("POST", "/v1/chat/completions")
    assert header_values(record, "authorization") == [f"Bearer {harness.llm_api_key}"]
    payload = record["json"]
    assert payload["model"] == "fake-model"
    assert isinstance(payload["messages"], list), payload
    assert payload["messages"], payload
    if route == "stream":
        assert payload.get("stream") is True, payload


@pytest.mark.req("SVC-LLM-5")
def test_svc_llm_5_model_comes_from_the_configuration(
    start_service: Callable[..., Running], fake_llm: FakeControl, secret: str
) -> None:
    running = start_service(llm_model="other-model")
    token = fake_llm.behave(reply="from the other model")
    with http_client(running.url, headers={SECRET_HEADER: secret}) as client:
        response, _ = call(client, "chat", token)
    assert response.status_code == 200, response.text
    (record,) = fake_llm.requests(token)
    assert record["json"]["model"] == "other-model"
