"""OPS-DRAIN-2 through the whole chain: a stream cut by the gateway's drain stops the LLM."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import pytest

from contract_tests.gateway.conftest import RawRequest
from harness.client import Session
from harness.fakes import FakeControl
from harness.spec import route
from harness.system import Running, User

STREAM_PATH = route("chat_stream").path
DRAIN = 1.5
#: Drain over -> LLM request closed within this long (two hops: gateway, service).
CLOSE_WITHIN = 1.0


@pytest.mark.req("OPS-DRAIN-2")
def test_ops_drain_2_a_stream_cut_by_the_drain_closes_the_llm_request(
    start_gateway: Callable[..., Running], service: Running, alice: User, fake_llm: FakeControl
) -> None:
    running = start_gateway(service_url=service.url, drain_timeout=str(DRAIN))
    session = Session.of(running.url, alice)
    token = fake_llm.behave(tokens=4, hold_after=1)  # never released
    payload = json.dumps({"message": f"Tell me {token}"}).encode()
    with RawRequest.to_gateway(session, STREAM_PATH, payload) as browser:
        assert browser.read_events(1)[0].event == "token"
        signalled = time.monotonic()
        running.process.signal(signal.SIGTERM)
        events = browser.read_all(timeout=DRAIN + 5).events
        assert [e.event for e in events][-1] == "error", events
        assert events[-1].json().get("status") == 503, events[-1].data
        left = signalled + DRAIN + CLOSE_WITHIN - time.monotonic()
        fake_llm.wait_for(
            lambda records: records[0]["aborted"], match=token, timeout=max(left, 0.1)
        )
    assert not fake_llm.requests(token)[0]["completed"]
