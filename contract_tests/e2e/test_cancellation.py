"""E2E-5: a browser that leaves mid-stream stops the LLM, through the whole chain."""

from __future__ import annotations

import json

import httpx
import pytest

from contract_tests.gateway.conftest import RawRequest
from harness.client import Session, parse_stream
from harness.fakes import FakeControl
from harness.spec import route

STREAM_PATH = route("chat_stream").path
#: Browser gone -> LLM request closed within this long (two hops: gateway, service).
CANCEL_WITHIN = 1.0


@pytest.mark.req("E2E-5")
def test_e2e_5_browser_leaving_mid_stream_closes_the_llm_request_within_1s(
    e2e_session: Session, e2e_client: httpx.Client, fake_llm: FakeControl
) -> None:
    token = fake_llm.behave(tokens=4, hold_after=1)  # never released
    payload = json.dumps({"message": f"Tell me {token}"}).encode()
    with RawRequest.to_gateway(e2e_session, STREAM_PATH, payload) as browser:
        events = browser.read_events(1)
        assert browser.response.status == 200
        assert events[0].event == "token", events
        assert events[0].json() == {"text": "tok0 "}, events
        (record,) = fake_llm.requests(token)
        assert not record["aborted"], "the LLM request ended before the browser left"
        browser.abort()
        fake_llm.wait_for(lambda records: records[0]["aborted"], match=token, timeout=CANCEL_WITHIN)
    # The chain still streams for the next request.
    token = fake_llm.behave(tokens=2)
    again = e2e_client.post(STREAM_PATH, json={"message": f"again {token}"})
    assert again.status_code == 200, again.text
    events, rest = parse_stream(again.content)
    assert [e.event for e in events] == ["token", "token", "done"], events
    assert rest == b""
