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
        before = _upstream_sockets(cluster, gateway)
        streams = [stack.enter_context(open_stream(streamer, STREAM, held)) for _ in range(cap)]
        for response in streams:
            assert response.status_code == 200
        fake.control.wait_for(lambda r: len(r) == cap, match=held)
        victim, carried = _busiest_worker(before, _upstream_sockets(cluster, gateway))
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


#: One socket of a gateway worker towards the service: (pid, local address, peer address).
Socket = tuple[int, str, str]


def _upstream_sockets(cluster: Cluster, gateway: Running) -> dict[Socket, int]:
    """Every gateway worker's established connection to the service, with its bytes received.

    A worker's pool keeps idle connections from earlier requests, so a count of
    connections says nothing about streams; the bytes a connection received while the
    held streams opened (and nothing else ran) say which ones carry them.
    """
    record = cluster.tier(gateway)
    upstream_port = urlsplit(record.rewritten["SERVICE_BASE_URL"]).port
    found: dict[Socket, int] = {}
    for host in record.hosts:
        ss = [SS, "-tnpiH", "state", "established", f"( dport = :{upstream_port} )"]
        lines = subprocess.run(
            cluster.info.hosts[host.name].exec_argv(ss),
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout  # fmt: skip
        # Each socket is a line of addresses and owner, then a line of TCP details.
        for head, details in re.findall(r"^(\S.*)\n\s+(.*)$", lines, flags=re.MULTILINE):
            fields, pid = head.split(), re.search(r"pid=(\d+)", head)
            received = re.search(r"bytes_received:(\d+)", details)
            if pid and len(fields) >= 4:
                socket = (int(pid.group(1)), f"{host.name} {fields[2]}", fields[3])
                found[socket] = int(received.group(1)) if received else 0
    return found


def _busiest_worker(before: dict[Socket, int], after: dict[Socket, int]) -> tuple[int, int]:
    """(pid of the worker whose connections carried the most held streams, how many)."""
    per_pid: Counter[int] = Counter(
        socket[0] for socket, received in after.items() if received > before.get(socket, 0)
    )
    assert per_pid, f"no gateway worker's connection received a held stream's first event: {after}"
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
