"""SVC-CANCEL-1: the service stops working for a caller that left.

The caller is a raw socket (``RawRequest``) that leaves at a chosen moment; the fake
LLM records whether its request was closed (``aborted``).
"""

from __future__ import annotations

import json

import httpx
import pytest

from contract_tests.gateway.conftest import RawRequest
from contract_tests.service._helpers import ROUTES, SECRET_HEADER
from harness.client import parse_stream
from harness.fakes import FakeControl
from harness.system import Running

#: The service closes its LLM request within this long after the caller left.
CANCEL_WITHIN = 1.0


def body(token: str) -> bytes:
    return json.dumps({"message": f"Hello {token}", "history": []}).encode()


@pytest.mark.req("SVC-CANCEL-1")
def test_svc_cancel_1_caller_leaving_mid_stream_closes_the_llm_request_within_1s(
    service: Running, secret: str, fake_llm: FakeControl, service_client: httpx.Client
) -> None:
    token = fake_llm.behave(tokens=4, hold_after=1)  # never released
    headers = [(SECRET_HEADER, secret)]
    with RawRequest.post(service.url, ROUTES["stream"], body(token), headers) as caller:
        events = caller.read_events(1)
        assert caller.response.status == 200
        assert events[0].event == "token", events
        (record,) = fake_llm.requests(token)
        assert not record["aborted"], "the LLM request ended before the caller left"
        caller.abort()
        fake_llm.wait_for(lambda records: records[0]["aborted"], match=token, timeout=CANCEL_WITHIN)
    # The service still streams for the next caller.
    again = service_client.post(ROUTES["stream"], json={"message": "again"})
    assert again.status_code == 200, again.text
    events, rest = parse_stream(again.content)
    assert events[-1].event == "done", events
    assert rest == b""


@pytest.mark.req("SVC-CANCEL-1")
def test_svc_cancel_1_caller_leaving_a_one_shot_chat_closes_the_llm_request_within_1s(
    service: Running, secret: str, fake_llm: FakeControl
) -> None:
    # Beyond a stream: the caller leaves while the LLM has the request and says nothing
    # (the service's LLM timeout is 3 s, so only a propagated disconnect ends it in time).
    token = fake_llm.behave(hang=True)
    headers = [(SECRET_HEADER, secret)]
    with RawRequest.post(service.url, ROUTES["chat"], body(token), headers) as caller:
        fake_llm.wait_for(lambda records: len(records) == 1, match=token)
        assert caller.response.status is None
        caller.abort()
        fake_llm.wait_for(lambda records: records[0]["aborted"], match=token, timeout=CANCEL_WITHIN)
