"""CLUSTER-5: a gateway worker killed under load loses only what it carried; its slots return."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
import pytest

from cluster_tests.conftest import Cluster
from cluster_tests.observe import BackgroundLoad, open_stream, poll, post
from harness.client import Session, problem_violations, read_events
from harness.fakes import new_token
from harness.spec import route
from harness.system import Fake, Running, User

pytestmark = pytest.mark.req("CLUSTER-5")

STREAM = route("chat_stream")
CHAT = route("chat")
LOAD_CLIENTS = 6
LEASE_BOUND = 30.0  # the spec's bound on how long a dead worker's slots stay taken
SS = shutil.which("ss") or "/usr/bin/ss"  # iproute2, like `ip`


def test_cluster_5_a_killed_worker_loses_only_its_requests_and_its_slots_come_back(
    cluster: Cluster, limited_tier: tuple[Running, Fake], alice: User, bob: User, findings: dict
) -> None:
    gateway, fake = limited_tier
    cap = int(gateway.knob("max_streams_per_user"))
    streamer, loader = Session.of(gateway.url, alice), Session.of(gateway.url, bob)
    held = fake.control.behave(hold_after=1)
    load = BackgroundLoad(
        LOAD_CLIENTS, lambda client, n: _judge(post(loader, CHAT, new_token())), seconds=30
    )
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(open_stream(streamer, STREAM, held)) for _ in range(cap)]
        for response in streams:
            assert response.status_code == 200
        fake.control.wait_for(lambda r: len(r) == cap, match=held)
        victim, carried = _busiest_worker(cluster, gateway)
        assert carried >= 1, "some worker carries one of the held streams"
        load.start()
        poll(lambda: load.total() >= 20, within=10, every=0.05, what="load under way")
        os.kill(victim, signal.SIGKILL)
        killed_at = load.total()
        # The dead worker's leases keep the user at the cap until they expire.
        started = time.monotonic()
        new = new_token()
        took = poll(
            lambda: post(streamer, STREAM, new).status_code == 200,
            within=LEASE_BOUND,
            every=0.5,
            what="the killed worker's stream slots come back",
        )
        assert time.monotonic() - started <= LEASE_BOUND
        after_kill = load.total() - killed_at
        load.stop()
        fake.control.release(held, count=cap - carried)
        ends = Counter(_how_it_ended(response) for response in streams)
    assert ends == {"done": cap - carried, "cut": carried}, ends
    assert took > 0.5, "right after the kill the user was still at the cap"
    outcome = load.outcomes()
    findings["CLUSTER-5"] = {
        "held streams": cap,
        "held streams on the killed worker, cut": carried,
        "held streams elsewhere, finished with done": ends["done"],
        "chat requests under load": dict(outcome),
        "seconds until the dead worker's slots came back": round(took, 1),
    }
    assert outcome["ok"] >= after_kill - LOAD_CLIENTS, "the load went on after the kill"
    assert set(outcome) <= {"ok", "clean error"}, outcome
    # Only requests the worker carried may fail: never more than were in flight at once.
    assert outcome["clean error"] <= LOAD_CLIENTS, outcome


def _busiest_worker(cluster: Cluster, gateway: Running) -> tuple[int, int]:
    """(pid of the gateway worker holding the most upstream streams, how many it holds)."""
    record = cluster.tier(gateway)
    upstream_port = urlsplit(record.rewritten["SERVICE_BASE_URL"]).port
    per_pid: Counter[int] = Counter()
    for host in record.hosts:
        ss = [SS, "-tnpH", "state", "established", f"( dport = :{upstream_port} )"]
        lines = subprocess.run(
            cluster.info.hosts[host.name].exec_argv(ss),
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout  # fmt: skip
        for pid in re.findall(r"pid=(\d+)", lines):
            per_pid[int(pid)] += 1
    assert per_pid, "no gateway worker holds a connection to the service"
    pid, count = per_pid.most_common(1)[0]
    return pid, count


def _how_it_ended(response: httpx.Response) -> str:
    """ "done" when the stream ended with its done event, "cut" when it broke off before."""
    try:
        events = [event.event for event in read_events(response)]
    except httpx.TransportError:
        return "cut"
    return "done" if events and events[-1] == "done" else "cut"


def _judge(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "ok"
    if response.status_code == 502 and not problem_violations(response, 502):
        return "clean error"
    return f"status {response.status_code}"
