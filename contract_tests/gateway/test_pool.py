"""GW-PROXY-1: one pooled client per worker, connections reused, closed at shutdown."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from harness.client import logged_in, parse_stream
from harness.fakes import FakeControl
from harness.spec import route
from harness.system import Running, User

#: The fake service closes idle keep-alive connections after this many seconds.
SERVICE_KEEP_ALIVE = 5.0
CHAT = route("chat")
STREAM = route("chat_stream")


@pytest.mark.req("GW-PROXY-1")
def test_gw_proxy_1_hundred_sequential_requests_reuse_at_most_two_connections(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    before = fake_service.connections()["accepted"]
    for n in range(100):
        # Alternate one-shot and streamed calls: a stream must give its connection back too.
        if n % 2:
            response = STREAM.call(alice_client, f"seq-{n}")
            assert response.status_code == 200, response.text
            events, rest = parse_stream(response.content)
            assert events[-1].event == "done"
            assert rest == b""
        else:
            response = CHAT.call(alice_client, f"seq-{n}")
            assert response.status_code == 200, response.text
    assert len(fake_service.requests()) == 100
    accepted = fake_service.connections()["accepted"] - before
    assert accepted <= 2, f"100 sequential requests opened {accepted} connections to the service"


@pytest.mark.req("GW-PROXY-1")
def test_gw_proxy_1_a_connection_idle_past_the_service_keep_alive_is_not_reused(
    alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    first = CHAT.call(alice_client, "before-idle")
    assert first.status_code == 200, first.text
    # Idling past the service's keep-alive IS the behaviour under test: the service
    # closes the pooled connection, and the gateway must not send on it afterwards.
    time.sleep(SERVICE_KEEP_ALIVE + 1.0)
    for name in ("after-idle", "after-idle-stream"):
        again = (STREAM if name.endswith("stream") else CHAT).call(alice_client, name)
        assert again.status_code == 200, f"{again.status_code} after idling: {again.text}"


@pytest.mark.req("GW-PROXY-1")
def test_gw_proxy_1_the_gateway_shuts_down_cleanly_after_proxying(
    start_gateway: Callable[..., Running], alice: User, fake_service: FakeControl
) -> None:
    running = start_gateway()
    with logged_in(running.url, alice) as client:
        for each in (CHAT, STREAM):
            response = each.call(client, f"before-shutdown-{each}")
            assert response.status_code == 200, response.text
    assert fake_service.connections()["accepted"] >= 1
    running.process.signal(signal.SIGTERM)
    code = running.process.wait_exit(15)
    # uvicorn exits 0 after a graceful shutdown (or re-raises the SIGTERM it caught).
    assert code in (0, -signal.SIGTERM), f"gateway exit code {code}"
    log = running.log.read_text(encoding="utf-8", errors="replace")
    for text in ("Unclosed", "Traceback", "RuntimeError", "Task was destroyed"):
        assert text not in log, f"the gateway log says {text!r} at shutdown:\n{log[-3000:]}"
