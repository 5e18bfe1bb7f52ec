"""GW-TIMING-1/2, GW-HTTP-1: the gateway adds nothing on the wire.

Events keep their pace (no coalescing), the first byte is not held back, and the
service sees the HTTP version the plug file declares.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time

import httpx
import pytest

from contract_tests.gateway.conftest import RawRequest
from harness.client import Session, http_client
from harness.fakes import FakeControl
from harness.plug import Plug
from harness.spec import proxied_routes, route
from harness.system import Running

INTERVAL = 0.1
TOLERANCE = 0.03
STREAM = route("chat_stream")


def arrival_times(session: Session, token: str, count: int) -> list[tuple[str, float]]:
    """(event name, monotonic arrival time) of the first ``count`` events of a stream."""
    body = json.dumps({"message": f"pace {token}"}).encode()
    arrivals: list[tuple[str, float]] = []
    with RawRequest.to_gateway(session, STREAM.path, body) as browser:
        while len(arrivals) < count:
            seen = len(browser.response.events)
            assert browser.recv(timeout=5.0), f"the stream ended after {arrivals}"
            now = time.monotonic()
            arrivals += [(e.event, now) for e in browser.response.events[seen:]]
    return arrivals


@pytest.mark.req("GW-TIMING-1")
def test_gw_timing_1_events_100ms_apart_reach_the_client_100ms_apart(
    alice_session: Session, fake_service: FakeControl
) -> None:
    token = fake_service.behave(events=10, interval=INTERVAL)
    arrivals = arrival_times(alice_session, token, 11)
    assert [name for name, _ in arrivals] == ["token"] * 10 + ["done"]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(arrivals)]
    shown = [round(gap * 1000) for gap in gaps]
    # Two events in one read show up as a 0 ms gap next to a 200 ms one: coalescing.
    off = [ms for ms in shown if abs(ms / 1000 - INTERVAL) > TOLERANCE]
    assert not off, f"gaps between events (ms): {shown}; outside 100 ± 30: {off}"


# -- GW-TIMING-2 ----------------------------------------------------------------------------------
ROUNDS = 20
WARM_UP = 5
ADDED_TTFB = 0.010


def time_to_first_byte(client: httpx.Client, path: str, token: str) -> float:
    """Seconds from sending a stream request to its first body bytes (read to the end)."""
    started = time.monotonic()
    with client.stream("POST", path, json={"message": f"ttfb {token}"}) as response:
        chunks = response.iter_raw()
        first = next(chunks, b"")
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.status_code
        assert first, "empty stream"
        for _ in chunks:  # finish, so the connection is reused
            pass
    return elapsed


@pytest.mark.req("GW-TIMING-2")
def test_gw_timing_2_the_gateway_adds_at_most_10ms_to_the_first_byte(
    alice_client: httpx.Client, fake_service: FakeControl, secret: str
) -> None:
    token = fake_service.behave(events=1)
    direct_headers = {"X-Internal-Secret": secret}
    with http_client(fake_service.url, headers=direct_headers) as direct:
        through, straight = [], []
        for n in range(WARM_UP + ROUNDS):
            # Interleaved, so load from elsewhere on the machine hits both alike.
            gateway_ttfb = time_to_first_byte(alice_client, STREAM.path, f"{token} {n}")
            direct_ttfb = time_to_first_byte(direct, STREAM.upstream, f"{token} {n}")
            if n >= WARM_UP:
                through.append(gateway_ttfb)
                straight.append(direct_ttfb)
    added = statistics.median(through) - statistics.median(straight)
    assert added <= ADDED_TTFB, (
        f"the gateway adds {added * 1000:.1f} ms to the first byte (median through it "
        f"{statistics.median(through) * 1000:.1f} ms, direct "
        f"{statistics.median(straight) * 1000:.1f} ms)"
    )


# -- GW-HTTP-1 ------------------------------------------------------------------------------------
@pytest.mark.req("GW-HTTP-1")
def test_gw_http_1_the_service_sees_the_http_version_of_the_plug_file(
    plug: Plug, gateway: Running, alice_client: httpx.Client, fake_service: FakeControl
) -> None:
    declared = plug.gateway.upstream_http_version
    routes = proxied_routes()
    for n in range(2):
        for each in routes:
            response = each.call(alice_client, f"version-{each}-{n}")
            assert response.status_code == 200, response.text
    records = fake_service.requests()
    assert len(records) == 2 * len(routes), [r["path"] for r in records]
    versions = {record["http_version"] for record in records}
    assert versions == {declared}, (
        f"the service saw HTTP {sorted(versions)}; the plug file declares {declared}"
    )
