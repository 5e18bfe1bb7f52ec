"""SVC-STREAM: streamed chat as Server-Sent Events, relayed as the LLM produces them."""

from __future__ import annotations

import httpx
import pytest

from harness.client import Event, EventReader, parse_stream
from harness.fakes import FakeControl

from ._helpers import assert_problem_event

PATH = "/chatbot/stream/"


def _stream(client: httpx.Client, message: str) -> tuple[httpx.Response, list[Event], bytes]:
    response = client.post(PATH, json={"message": message})
    assert response.status_code == 200, response.text
    events, trailing = parse_stream(response.content)
    return response, events, trailing


def _texts(events: list[Event]) -> list[str]:
    texts = []
    for event in events:
        assert event.event == "token", event
        data = event.json()
        assert isinstance(data, dict), data
        assert set(data) == {"text"}, data
        assert isinstance(data["text"], str), data
        texts.append(data["text"])
    return [t for t in texts if t]


@pytest.mark.req("SVC-STREAM-1")
@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ({"tokens": 6}, [f"tok{i} " for i in range(6)]),
        ({"reply": "Grüße aus Köln 🌍 — fin."}, ["Grüße ", "aus ", "Köln ", "🌍 ", "— ", "fin."]),
    ],
    ids=["six-tokens", "unicode"],
)
def test_svc_stream_1_token_events_in_order_then_one_done_with_usage(
    service_client: httpx.Client,
    fake_llm: FakeControl,
    behaviour: dict[str, object],
    expected: list[str],
) -> None:
    token = fake_llm.behave(**behaviour)
    response, events, trailing = _stream(service_client, f"Stream please {token}")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert trailing == b"", f"stream ended inside an event: {trailing!r}"
    assert [e.event for e in events].count("done") == 1, [e.raw for e in events]
    assert events[-1].event == "done", [e.raw for e in events]
    assert _texts(events[:-1]) == expected
    usage = events[-1].json()["usage"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(usage.get(key), int), usage


@pytest.mark.req("SVC-STREAM-2")
def test_svc_stream_2_no_cache_and_no_proxy_buffering(
    service_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(tokens=2)
    response, _, _ = _stream(service_client, token)
    cache_control = [d.strip().lower() for d in response.headers["cache-control"].split(",")]
    assert "no-cache" in cache_control, response.headers
    assert response.headers.get("x-accel-buffering") == "no", response.headers


@pytest.mark.req("SVC-STREAM-3")
@pytest.mark.parametrize("mode", ["drop", "error_event"])
def test_svc_stream_3_llm_failure_ends_stream_with_one_error_at_a_boundary(
    service_client: httpx.Client, fake_llm: FakeControl, mode: str
) -> None:
    token = fake_llm.behave(tokens=6, fail_after=2, fail_mode=mode)
    response, events, trailing = _stream(service_client, f"Fail midway {token}")
    assert response.content.endswith(b"\n\n"), response.content[-200:]
    assert trailing == b"", f"stream ended inside an event: {trailing!r}"
    names = [e.event for e in events]
    assert names.count("error") == 1, names
    assert names[-1] == "error", names
    assert "done" not in names, names
    assert _texts(events[:-1]) == ["tok0 ", "tok1 "]
    problem = assert_problem_event(events[-1])
    assert 500 <= problem["status"] < 600, problem


@pytest.mark.req("SVC-STREAM-4")
def test_svc_stream_4_first_token_arrives_while_the_llm_still_holds(
    service_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(tokens=4, hold_after=1)
    reader = EventReader()
    events: list[Event] = []
    with service_client.stream("POST", PATH, json={"message": f"Hold on {token}"}) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        for chunk in chunks:
            events += reader.feed(chunk)
            if events:
                break
        assert events, "the stream ended before any event"
        assert events[0].event == "token", events
        assert events[0].json() == {"text": "tok0 "}, events
        (record,) = fake_llm.requests(token)
        assert not record["completed"], "the first token arrived only after the LLM finished"
        assert not record["aborted"], "the service gave up on the LLM before the release"
        fake_llm.release(token)
        for chunk in chunks:
            events += reader.feed(chunk)
    assert reader.pending == b"", reader.pending
    assert events[-1].event == "done", [e.raw for e in events]
    assert _texts(events[:-1]) == [f"tok{i} " for i in range(4)]
