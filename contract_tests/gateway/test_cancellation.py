"""GW-CANCEL-1..3: nobody works for a client that left.

Each test is a browser on a raw socket (``RawRequest``) that leaves at a chosen moment:
a pool of the test's own could keep the connection open, a closed socket cannot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from contract_tests.gateway.conftest import RawRequest, assert_absent
from harness.client import Session, parse_stream
from harness.fakes import FakeControl
from harness.spec import route
from harness.system import Running, User

#: GW-CANCEL-1/2: the gateway closes its upstream request within this long.
CANCEL_WITHIN = 1.0
CHAT = route("chat")
STREAM = route("chat_stream")


def stream_body(token: str) -> bytes:
    return json.dumps({"message": f"hello {token}"}).encode()


def assert_still_serves(client: httpx.Client, name: str) -> None:
    """The gateway answers the next stream in full: the abort broke nothing."""
    response = STREAM.call(client, name)
    assert response.status_code == 200, response.text
    events, rest = parse_stream(response.content)
    assert [e.event for e in events][-1:] == ["done"], events
    assert rest == b""


@pytest.mark.req("GW-CANCEL-1")
def test_gw_cancel_1_disconnect_mid_stream_closes_the_upstream_request_within_1s(
    alice_session: Session, alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    token = fake_service.behave(events=3, hold_after=1)  # never released
    with RawRequest.to_gateway(alice_session, STREAM.path, stream_body(token)) as browser:
        events = browser.read_events(1)
        assert browser.response.status == 200
        assert events[0].event == "token", events
        (record,) = fake_service.requests(token)
        assert not record["aborted"], "the upstream request ended before the client left"
        browser.abort()
        fake_service.wait_for(
            lambda records: records[0]["aborted"], match=token, timeout=CANCEL_WITHIN
        )
    assert not fake_service.requests(token)[0]["completed"]
    assert_still_serves(alice_client, "after-mid-stream-abort")


@pytest.mark.req("GW-CANCEL-1")
def test_gw_cancel_1_five_mid_stream_disconnects_in_a_row_each_close_their_upstream(
    alice_session: Session, alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    # A relay that only leaks every n-th time, or a pooled connection that stalls after
    # a few early closes (h2c without RST_STREAM), shows up on repetition.
    token = fake_service.behave(events=5, hold_after=2)
    for n in range(5):
        body = stream_body(f"{token} #{n}")
        with RawRequest.to_gateway(alice_session, STREAM.path, body) as browser:
            assert [e.event for e in browser.read_events(2)][:2] == ["token", "token"]
        fake_service.wait_for(
            lambda records, n=n: len(records) == n + 1 and records[n]["aborted"],
            match=token,
            timeout=CANCEL_WITHIN,
        )
        assert_still_serves(alice_client, f"after-abort-{n}")


@pytest.mark.req("GW-CANCEL-2")
@pytest.mark.parametrize("fields", [{"hang": True}, {"delay": 30}], ids=["hang", "delay"])
def test_gw_cancel_2_disconnect_before_the_first_byte_closes_the_upstream_request_within_1s(
    alice_session: Session,
    alice_client: httpx.Client,
    fake_service: FakeControl,
    fields: dict[str, object],
) -> None:
    token = fake_service.behave(**fields)
    with RawRequest.to_gateway(alice_session, STREAM.path, stream_body(token)) as browser:
        # The service has the request and is not answering it.
        fake_service.wait_for(lambda records: len(records) == 1, match=token)
        assert browser.response.status is None
        browser.abort()
        fake_service.wait_for(
            lambda records: records[0]["aborted"], match=token, timeout=CANCEL_WITHIN
        )
    assert fake_service.requests(token)[0]["status"] is None, "the service answered after all"
    assert_still_serves(alice_client, "after-early-abort")


@pytest.mark.req("GW-CANCEL-2")
def test_gw_cancel_2_disconnect_before_a_one_shot_answer_closes_the_upstream_request(
    alice_session: Session, fake_service: FakeControl
) -> None:
    token = fake_service.behave(hang=True)
    with RawRequest.to_gateway(alice_session, CHAT.path, stream_body(token)) as browser:
        fake_service.wait_for(lambda records: len(records) == 1, match=token)
        browser.abort()
        fake_service.wait_for(
            lambda records: records[0]["aborted"], match=token, timeout=CANCEL_WITHIN
        )


@pytest.mark.req("GW-CANCEL-3")
def test_gw_cancel_3_a_request_abandoned_in_the_pool_queue_never_reaches_the_service(
    start_gateway: Callable[..., Running], alice: User, fake_service: FakeControl
) -> None:
    # One connection, a long pool timeout: the second request can only wait in the queue.
    running = start_gateway(max_connections="1", pool_timeout="10", read_timeout="30")
    session = Session.of(running.url, alice)
    holder = fake_service.behave(events=2, hold_after=1)
    queued = fake_service.behave()  # default answer: only its arrival matters
    with session.client() as client:
        first = client.send(STREAM.build(client, holder), stream=True)
        try:
            assert first.status_code == 200
            fake_service.wait_for(lambda records: len(records) == 1, match=holder)

            with RawRequest.to_gateway(session, CHAT.path, stream_body(queued)) as waiting:
                # Its wait is invisible at the service, so give it a bounded moment:
                # 0.5 s in which it must NOT arrive (the only connection is busy).
                assert_absent(fake_service, queued, 0.5, "a request queued behind a full pool")
                assert waiting.response.status is None
                waiting.abort()
            # GW-CANCEL-1/2 give a gateway 1 s to notice a disconnect; only then does
            # the connection come free, so "afterwards" is unambiguous.
            assert_absent(fake_service, queued, 1.0, "a request abandoned in the queue")

            fake_service.release(holder, count=1)
            events, rest = parse_stream(first.read())
            assert [e.event for e in events] == ["token", "token", "done"], events
            assert rest == b""
        finally:
            first.close()

        assert_absent(fake_service, queued, 1.5, "a request abandoned in the queue")
        # Its place in the queue was freed: the single connection serves at once
        # (a leaked waiter slot would make this wait the whole pool timeout, 10 s).
        started = time.monotonic()
        fresh = CHAT.call(client, "fresh-after-abandon")
        elapsed = time.monotonic() - started
        assert fresh.status_code == 200, fresh.text
        assert elapsed < 2.0, f"a fresh request took {elapsed:.1f}s: the queue slot leaked"


@pytest.mark.req("GW-CANCEL-3")
def test_gw_cancel_3_many_abandoned_waiters_leave_the_pool_usable(
    start_gateway: Callable[..., Running], alice: User, fake_service: FakeControl
) -> None:
    # httpcore #1093: every cancelled waiter may leak a slot; with 2 connections a few
    # leaked slots are enough to refuse every later request.
    running = start_gateway(max_connections="2", pool_timeout="10", read_timeout="30")
    session = Session.of(running.url, alice)
    holder = fake_service.behave(events=2, hold_after=1)
    queued = fake_service.behave()
    with session.client() as client:
        held = [client.send(STREAM.build(client, f"{holder} #{n}"), stream=True) for n in (1, 2)]
        try:
            fake_service.wait_for(lambda records: len(records) == 2, match=holder)
            waiters = [
                RawRequest.to_gateway(session, CHAT.path, stream_body(f"{queued} #{n}"))
                for n in range(10)
            ]
            assert_absent(fake_service, queued, 0.5, "requests queued behind a full pool")
            for waiter in waiters:
                waiter.abort()
            assert_absent(fake_service, queued, 1.0, "requests abandoned in the queue")
            fake_service.release(holder, count=2)
            for response in held:
                events, _ = parse_stream(response.read())
                assert events[-1].event == "done", events
        finally:
            for response in held:
                response.close()
        assert_absent(fake_service, queued, 1.5, "requests abandoned in the queue")
        for n in range(3):
            started = time.monotonic()
            fresh = CHAT.call(client, f"fresh-{n}")
            elapsed = time.monotonic() - started
            assert fresh.status_code == 200, fresh.text
            assert elapsed < 2.0, f"fresh request {n} took {elapsed:.1f}s: queue slots leaked"
