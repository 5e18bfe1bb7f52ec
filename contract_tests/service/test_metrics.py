"""OPS-METRICS-1, -3 and -5 at the service: its Prometheus metrics, counted after a known load.

The names, types, labels and label values come from the spec's table ("The metrics"),
the expected counts from what the fake LLM reported (the ``usage`` the service relays),
never from constants. The service is shared with the whole session, so each test waits
until it is quiet, scrapes, sends its load, and compares the two scrapes; a counter that
moves by more than its load (a stream counted twice) fails as surely as one that lags.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from contract_tests.gateway.conftest import RawRequest
from contract_tests.metrics import Scrape, metrics_url, moved, scrape, wait_until
from contract_tests.service._helpers import (
    ROUTES,
    SECRET_HEADER,
    operations,
    request_kwargs,
    service_spec,
)
from harness.client import Event, assert_problem, parse_stream
from harness.fakes import FakeControl
from harness.requirements import METRIC_METHODS, Metric, metric_table
from harness.system import Running

REQUESTS = "service_requests_total"
DURATION = "service_request_duration_seconds_count"
STREAMS_OPEN = "service_streams_open"
LLM = "service_llm_requests_total"
LLM_DURATION = "service_llm_duration_seconds_count"
TTFT = "service_llm_ttft_seconds_count"
TOKENS = "service_llm_tokens_total"
UNMATCHED = "unmatched"
#: Long enough for a count that comes late (a second count of one call) to show.
LATE = 0.3


# -- the spec's table -------------------------------------------------------------------------


def service_metrics() -> tuple[Metric, ...]:
    """The ``service_*`` rows of the table in spec/requirements.md."""
    found = tuple(m for m in metric_table() if m.name.startswith("service_"))
    assert found, "spec/requirements.md has no service_* rows in its metrics table"
    return found


def labelled_sample(metric: Metric) -> str:
    """The sample that carries its labels (a histogram's ``_count``)."""
    return f"{metric.name}_count" if metric.type == "histogram" else metric.name


@cache
def templates() -> frozenset[str]:
    """The route templates ``route`` may take at the service, besides ``unmatched``."""
    return frozenset(path for _, path, _ in operations(service_spec()))


# -- counting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A sample, the labels it is summed over, and how far a load must move it."""

    name: str
    labels: Mapping[str, str]
    by: float

    def __str__(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.name}{{{labels}}}"


def count(name: str, by: float, **labels: str) -> Count:
    return Count(name, labels, by)


def movement(before: Scrape, after: Scrape, counts: list[Count]) -> dict[str, float]:
    return {str(c): moved(before, after, c.name, **c.labels) for c in counts}


def expected(counts: list[Count]) -> dict[str, float]:
    return {str(c): c.by for c in counts}


def counted(service: Running, before: Scrape, counts: list[Count]) -> dict[str, float]:
    """How far each count moved once the load settled, then stayed (late counts included)."""
    want = expected(counts)
    wait_until(service, lambda now: movement(before, now, counts) == want)
    time.sleep(LATE)  # sleep: a count that comes late must have come by now
    return movement(before, scrape(service), counts)


def _activity(now: Scrape) -> tuple[float, ...]:
    return now.value(STREAMS_OPEN), now.value(LLM), now.value(TOKENS)


def quiet(service: Running) -> Scrape:
    """A scrape once no stream is open and no LLM call ends (what earlier tests left is over).

    Requests are not waited for: a probe polled by someone else must not stall the test,
    and each count below names its route.
    """
    deadline = time.monotonic() + 5.0
    last = scrape(service)
    while True:
        time.sleep(0.1)  # poll interval, bounded by the deadline
        now = scrape(service)
        if now.value(STREAMS_OPEN) == 0 and _activity(now) == _activity(last):
            return now
        assert time.monotonic() < deadline, f"the service did not settle: {_activity(now)}"
        last = now


def chat_body(token: str) -> dict[str, Any]:
    return {"message": f"Count me {token}", "history": []}


def stream(client: httpx.Client, token: str) -> list[Event]:
    response = client.post(ROUTES["stream"], json=chat_body(token))
    assert response.status_code == 200, response.text
    events, trailing = parse_stream(response.content)
    assert trailing == b"", trailing
    return events


def usage_of(answer: Mapping[str, Any]) -> tuple[int, int]:
    usage = answer["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"]


# -- OPS-METRICS-1 ----------------------------------------------------------------------------


@pytest.mark.req("OPS-METRICS-1")
def test_ops_metrics_1_the_metrics_url_serves_each_service_metric_of_the_table(
    service: Running, service_client: httpx.Client, fake_llm: FakeControl
) -> None:
    # One chat and one stream, so that every labelled series has samples to show.
    assert service_client.post(ROUTES["chat"], json=chat_body("one")).status_code == 200
    assert stream(service_client, fake_llm.behave(tokens=2))[-1].event == "done"
    response = httpx.get(metrics_url(service), timeout=5.0, trust_env=False)
    assert response.status_code == 200, response.text[:200]
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    now = scrape(service)
    for metric in service_metrics():
        assert now.types.get(metric.family) == metric.type, (
            f"{metric.name}: type {now.types.get(metric.family)!r}, the spec says {metric.type}"
        )
        samples = [s for s in now.samples if s.name == labelled_sample(metric)]
        assert samples, f"{labelled_sample(metric)} has no sample"
        for sample in samples:
            names = set(sample.labels) - {"pid"}  # a worker's pid is allowed (the table's note)
            assert names == set(metric.labels), (metric.name, sample.labels)
            for label, listed in metric.values.items():
                assert sample.labels[label] in listed, (metric.name, sample.labels, listed)


@pytest.mark.req("OPS-METRICS-1")
def test_ops_metrics_1_the_service_port_does_not_serve_the_metrics(
    service: Running, service_client: httpx.Client, anon_client: httpx.Client
) -> None:
    assert urlsplit(metrics_url(service)).port != service.port
    anonymous = anon_client.get("/metrics")
    assert anonymous.status_code in (401, 403), anonymous.text
    with_secret = service_client.get("/metrics")
    assert_problem(with_secret, 404)
    for response in (anonymous, with_secret):
        assert "service_requests_total" not in response.text, response.text[:200]


@pytest.mark.req("OPS-METRICS-1")
def test_ops_metrics_1_service_streams_open_follows_the_open_streams(
    service: Running, secret: str, fake_llm: FakeControl
) -> None:
    before = quiet(service)
    token = fake_llm.behave(tokens=3, hold_after=1)
    body = json.dumps(chat_body(token)).encode()
    callers = [
        RawRequest.post(service.url, ROUTES["stream"], body, [(SECRET_HEADER, secret)])
        for _ in range(2)
    ]
    try:
        for caller in callers:
            assert caller.read_events(1)[0].event == "token"
        held = wait_until(service, lambda now: now.value(STREAMS_OPEN) == 2)
        assert held.value(STREAMS_OPEN) == 2, "two streams are held open"
        fake_llm.release(token, count=2)
        for caller in callers:
            assert caller.read_all().events[-1].event == "done"
    finally:
        for caller in callers:
            caller.abort()
    after = wait_until(service, lambda now: now.value(STREAMS_OPEN) == 0)
    assert after.value(STREAMS_OPEN) == 0, "the streams ended"
    assert moved(before, after, LLM, operation="stream", outcome="ok") == 2


# -- OPS-METRICS-3 ----------------------------------------------------------------------------


def _unknown_paths(token: str) -> list[str]:
    return [
        f"/{token}",
        f"/chatbot/{token}",
        f"/chatbot/stream/{token}/",
        f"/quiz/{token}/deeper",
        f"/{token}?{token}=1",
        "/chatbot",  # a template without its slash is not the template
    ]


@pytest.mark.req("OPS-METRICS-3")
def test_ops_metrics_3_unknown_paths_are_unmatched_never_a_raw_path(
    service: Running,
    service_client: httpx.Client,
    anon_client: httpx.Client,
    fake_llm: FakeControl,  # reset: the chat below gets the default answer
) -> None:
    before = quiet(service)
    token = secrets.token_hex(8)
    user, request_id = f"user-{token}", f"rid-{token}"
    unknown: Counter[int] = Counter()  # status -> how many
    for path in _unknown_paths(token):
        for response in (
            service_client.get(path),
            service_client.post(path, json=chat_body(token)),
            anon_client.get(path),
        ):
            assert response.status_code >= 400, (path, response.status_code)
            unknown[response.status_code] += 1
    # Methods OPS-METRICS-3 does not list, on a documented route: `other`, never themselves.
    for method in ("PROPFIND", "MKCOL"):
        assert service_client.request(method, ROUTES["chat"]).status_code >= 400
    # A user and a request id are never labels.
    headers = {"X-User-Id": user, "X-Request-ID": request_id}
    chat = service_client.post(ROUTES["chat"], json=chat_body(token), headers=headers)
    assert chat.status_code == 200, chat.text
    counts = [
        count(REQUESTS, unknown.total(), route=UNMATCHED),
        *(count(REQUESTS, n, route=UNMATCHED, status=str(s)) for s, n in unknown.items()),
        count(REQUESTS, 2, route=ROUTES["chat"], method="other"),
        count(REQUESTS, 1, route=ROUTES["chat"], method="POST", status="200"),
        count(DURATION, unknown.total(), route=UNMATCHED),
    ]
    assert counted(service, before, counts) == expected(counts)
    after = scrape(service)
    for sample in after.samples:
        if not sample.name.startswith("service_"):
            continue
        for label, value in sample.labels.items():
            for secret_value in (token, user, request_id):
                assert secret_value not in value, (sample.name, label, value)
    routes = after.label_values("route")
    assert routes <= templates() | {UNMATCHED}, routes - templates()
    methods = after.label_values("method")
    assert methods <= METRIC_METHODS, methods - METRIC_METHODS
    statuses = after.label_values("status")
    assert all(re.fullmatch(r"[1-5]\d\d", s) for s in statuses), statuses


# -- OPS-METRICS-5 ----------------------------------------------------------------------------


@dataclass
class Load:
    """What a load did, as the service answered it: its counts and the usage reported."""

    prompt: int = 0
    completion: int = 0

    def add(self, answer: Mapping[str, Any]) -> None:
        prompt, completion = usage_of(answer)
        self.prompt += prompt
        self.completion += completion


def stream_left_after_first_token(service: Running, secret: str, fake_llm: FakeControl) -> None:
    """A stream whose caller leaves after its first token, until the LLM sees it leave."""
    token = fake_llm.behave(tokens=4, hold_after=1)  # never released
    body = json.dumps(chat_body(token)).encode()
    with RawRequest.post(service.url, ROUTES["stream"], body, [(SECRET_HEADER, secret)]) as caller:
        assert caller.read_events(1)[0].event == "token"
        assert caller.response.status == 200
        caller.abort()
    fake_llm.wait_for(lambda records: records[0]["aborted"], match=token)


@pytest.mark.req("OPS-METRICS-5")
def test_ops_metrics_5_each_counter_moves_by_exactly_the_load(
    service: Running,
    secret: str,
    service_client: httpx.Client,
    anon_client: httpx.Client,
    fake_llm: FakeControl,
) -> None:
    """10 chats, 1 file chat, 4 streams (1 left after its first token), 2 LLM errors
    (a chat refused, a stream broken after its first token), 3 calls without the secret."""
    before = quiet(service)
    load = Load()
    for i in range(10):
        answer = service_client.post(ROUTES["chat"], json=chat_body(f"chat-{i}"))
        assert answer.status_code == 200, answer.text
        load.add(answer.json())
    upload = service_client.post(ROUTES["file"], **request_kwargs(ROUTES["file"], "file"))
    assert upload.status_code == 200, upload.text
    load.add(upload.json())
    for _ in range(3):
        events = stream(service_client, fake_llm.behave(tokens=3))
        assert events[-1].event == "done", [e.raw for e in events]
        load.add(events[-1].json())
    stream_left_after_first_token(service, secret, fake_llm)
    refused = service_client.post(ROUTES["chat"], json=chat_body(fake_llm.behave(status=500)))
    assert refused.status_code == 502, refused.text
    broken = stream(service_client, fake_llm.behave(tokens=4, fail_after=1))
    assert [e.event for e in broken] == ["token", "error"], [e.raw for e in broken]
    for _ in range(3):
        assert anon_client.post(ROUTES["chat"], json=chat_body("no secret")).status_code == 401

    chat, stream_route, file = ROUTES["chat"], ROUTES["stream"], ROUTES["file"]
    counts = [
        # Requests by route, method and status; the totals catch any status counted besides.
        count(REQUESTS, 10, route=chat, method="POST", status="200"),
        count(REQUESTS, 1, route=chat, method="POST", status="502"),
        count(REQUESTS, 3, route=chat, method="POST", status="401"),
        count(REQUESTS, 14, route=chat),
        count(REQUESTS, 5, route=stream_route, method="POST", status="200"),
        count(REQUESTS, 5, route=stream_route),
        count(REQUESTS, 1, route=file, method="POST", status="200"),
        count(REQUESTS, 1, route=file),
        count(REQUESTS, 0, route=ROUTES["quiz"]),
        count(DURATION, 14, route=chat),
        count(DURATION, 5, route=stream_route),
        count(DURATION, 1, route=file),
        # LLM calls: a file chat is a chat; a caller leaving is a cancel, not an ok.
        count(LLM, 11, operation="chat", outcome="ok"),
        count(LLM, 1, operation="chat", outcome="error"),
        count(LLM, 12, operation="chat"),
        count(LLM, 3, operation="stream", outcome="ok"),
        count(LLM, 1, operation="stream", outcome="cancelled"),
        count(LLM, 1, operation="stream", outcome="error"),
        count(LLM, 5, operation="stream"),
        count(LLM, 0, operation="quiz"),
        # "To the last token": the calls that got there; TTFT: each stream that had a first one.
        count(LLM_DURATION, 11, operation="chat"),
        count(LLM_DURATION, 3, operation="stream"),
        count(TTFT, 5),
        # Tokens: what the LLM reported, summed (the failed and the left calls reported none).
        count(TOKENS, load.prompt, kind="prompt"),
        count(TOKENS, load.completion, kind="completion"),
    ]
    assert counted(service, before, counts) == expected(counts)
    assert scrape(service).value(STREAMS_OPEN) == 0


@pytest.mark.req("OPS-METRICS-5")
def test_ops_metrics_5_a_caller_leaving_a_chat_cancels_its_one_llm_call(
    service: Running, secret: str, fake_llm: FakeControl
) -> None:
    before = quiet(service)
    token = fake_llm.behave(hang=True)
    body = json.dumps(chat_body(token)).encode()
    with RawRequest.post(service.url, ROUTES["chat"], body, [(SECRET_HEADER, secret)]) as caller:
        fake_llm.wait_for(lambda records: len(records) == 1, match=token)
        caller.abort()
    fake_llm.wait_for(lambda records: records[0]["aborted"], match=token)
    counts = [
        count(LLM, 1, operation="chat", outcome="cancelled"),
        count(LLM, 1, operation="chat"),
        count(REQUESTS, 1, route=ROUTES["chat"], method="POST"),
        count(DURATION, 1, route=ROUTES["chat"]),
        count(LLM_DURATION, 0, operation="chat"),
        count(TOKENS, 0),
    ]
    assert counted(service, before, counts) == expected(counts)


@pytest.mark.req("OPS-METRICS-5")
def test_ops_metrics_5_a_quiz_asked_twice_counts_two_llm_calls(
    service_client: httpx.Client, service: Running, fake_llm: FakeControl
) -> None:
    before = quiet(service)
    token = fake_llm.behave(content="not a quiz", times=1)  # the second answer is a quiz
    response = service_client.post(ROUTES["quiz"], **request_kwargs(ROUTES["quiz"], token))
    assert response.status_code == 200, response.text
    assert len(fake_llm.requests(token)) == 2
    counts = [
        count(REQUESTS, 1, route=ROUTES["quiz"], method="POST", status="200"),
        count(REQUESTS, 1, route=ROUTES["quiz"]),
        count(DURATION, 1, route=ROUTES["quiz"]),
        count(LLM, 2, operation="quiz"),
        count(LLM, 0, operation="quiz", outcome="cancelled"),
        count(LLM, 0, operation="chat"),
    ]
    assert counted(service, before, counts) == expected(counts)
    after = scrape(service)
    assert moved(before, after, LLM, operation="quiz", outcome="ok") >= 1, "the quiz came"
