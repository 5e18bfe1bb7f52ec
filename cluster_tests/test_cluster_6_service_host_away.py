"""CLUSTER-6: a service host taken away is routed around.

The host's processes are killed at once (a crashed host, or one stopped without a
drain): its connections are reset and its port refuses, and the balancer must send
every new request to the host left. The tiers are the test's own: the session's
keep both hosts.
"""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from cluster_tests.conftest import Cluster
from cluster_tests.observe import forwarded_for, poll, post
from harness.client import Session
from harness.fakes import new_token
from harness.spec import route
from harness.system import Fake, Harness, User

pytestmark = pytest.mark.req("CLUSTER-6")

CHAT = route("chat")
REQUESTS = 12


def test_cluster_6_requests_succeed_on_the_service_host_left(
    cluster: Cluster, harness: Harness, fake_llm_server: Fake, users: list[User], findings: dict
) -> None:
    service = harness.start_service(fake_llm_server.url + "/v1")
    gateway = harness.start_gateway(service.url, users)
    try:
        session = Session.of(gateway.url, users[0])
        llm = fake_llm_server.control
        away = cluster.tier(service).hosts[0]
        before = new_token()
        assert [post(session, CHAT, before).status_code for _ in range(4)] == [200] * 4
        assert away.address in forwarded_for(llm.requests(before)), "the host served before"
        os.killpg(away.pid, signal.SIGKILL)  # gunicorn and its workers: the host is gone
        poll(lambda: _gone(away.pid), within=10, every=0.05, what="the host's processes died")
        during = new_token()
        statuses = [post(session, CHAT, during).status_code for _ in range(REQUESTS)]
        assert statuses == [200] * REQUESTS
        served_by = forwarded_for(llm.requests(during))
        assert served_by, "the requests reached the LLM"
        assert away.address not in served_by, "the host left served them all"
        findings["CLUSTER-6"] = {
            "host taken away": away.name,
            "requests after (200)": len(statuses),
            "served by": sorted(served_by),
        }
    finally:
        gateway.process.stop()
        service.process.stop()


def _gone(pid: int) -> bool:
    """True once ``pid`` is dead (a zombie its launcher has not reaped yet counts as dead)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
