"""OPS-METRICS-1 in a cluster: one scrape per host counts every worker of that host.

Each host's gunicorn master serves the sum of its 2 workers' metrics (multiprocess
mode, deploy/gunicorn.conf.py). Chats sent through the balancer land on every worker
of both hosts; the hosts' counters, scraped once each, must add up to exactly what
was sent, at the gateways and at the services, and each host's gauges must show both
of its workers.
"""

from __future__ import annotations

from collections import Counter

import pytest

from cluster_tests.conftest import Cluster
from cluster_tests.observe import front_requests, hosts_reached, post
from cluster_tests.topology import TierRecord
from harness.client import Session
from harness.fakes import new_token
from harness.metrics import Scrape, read_metrics
from harness.spec import route
from harness.system import Running, User

pytestmark = pytest.mark.req("OPS-METRICS-1")

CHAT = route("chat")
#: Requests on fresh connections, round robin over 2 hosts x 2 workers.
SENT = 40
WORKERS_PER_HOST = 2


def _scrape_hosts(tier: TierRecord) -> dict[str, Scrape]:
    missing = [h.name for h in tier.hosts if not h.metrics]
    assert not missing, f"hosts without a metrics URL: {missing} (METRICS_PORT unset?)"
    return {h.name: read_metrics(h.metrics) for h in tier.hosts}


def _moved(
    before: dict[str, Scrape], after: dict[str, Scrape], name: str, **labels: str
) -> dict[str, float]:
    return {
        host: after[host].value(name, **labels) - before[host].value(name, **labels)
        for host in after
    }


def test_ops_metrics_1_one_scrape_per_host_counts_every_worker_of_it(
    cluster: Cluster,
    gateway_tier: Running,
    service_tier: Running,
    alice: User,
    findings: dict,
) -> None:
    gateways, services = cluster.tier(gateway_tier), cluster.tier(service_tier)
    session = Session.of(gateway_tier.url, alice)
    gateways_before, services_before = _scrape_hosts(gateways), _scrape_hosts(services)
    mark = front_requests(gateways)
    token = new_token()
    assert [post(session, CHAT, token).status_code for _ in range(SENT)] == [200] * SENT
    reached = Counter(hosts_reached(gateways, since=mark))
    assert len(reached) == 2, f"the chats reached {dict(reached)}"
    gateways_after, services_after = _scrape_hosts(gateways), _scrape_hosts(services)

    by_gateway = _moved(
        gateways_before, gateways_after, "gateway_requests_total", route=CHAT.path, status="200"
    )
    by_service = _moved(
        services_before, services_after, "service_requests_total", route=CHAT.upstream, status="200"
    )
    # Each host counted what the balancer gave it, and the hosts together what was sent.
    assert sum(by_gateway.values()) == SENT, by_gateway
    assert sum(by_service.values()) == SENT, by_service
    assert all(by_gateway.values()), by_gateway
    for host, scrape in gateways_after.items():
        pids = {
            s.labels.get("pid") for s in scrape.samples if s.name == "gateway_requests_in_flight"
        }
        assert len(pids - {None}) == WORKERS_PER_HOST, f"{host}: in-flight gauges of pids {pids}"
    findings["OPS-METRICS-1 (cluster)"] = {
        "chats sent through the balancer": SENT,
        "counted by each gateway host's scrape": by_gateway,
        "counted by each service host's scrape": by_service,
        "balancer's log, by host": dict(reached),
    }
