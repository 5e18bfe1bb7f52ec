"""Smoke test of the cluster: the whole chain answers, and both hosts of each tier serve."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import psycopg
import pytest
import redis

from cluster_tests.balancer import upstream_addresses
from cluster_tests.conftest import Cluster
from harness.client import Session
from harness.fakes import FakeControl
from harness.spec import route
from harness.system import Fake, Running, User

#: Requests sent through the front: round robin puts half on each gateway host.
REQUESTS = 12


@pytest.fixture
def fake_llm(fake_llm_server: Fake) -> FakeControl:
    fake_llm_server.control.reset()
    return fake_llm_server.control


def test_hosts_are_namespaces_on_the_bench_network(cluster: Cluster) -> None:
    hosts = cluster.topology.hosts
    assert sorted(hosts) == ["gw1", "gw2", "svc1", "svc2"]
    assert len({h.address for h in hosts.values()}) == 4
    assert all(h.address.startswith("198.18.") for h in hosts.values())
    assert all(h.netns.startswith(cluster.topology.prefix) for h in hosts.values())


def test_chat_through_both_tiers_reaches_every_host(
    cluster: Cluster,
    gateway_tier: Running,
    service_tier: Running,
    users: list[User],
    fake_llm: FakeControl,
) -> None:
    gateways = cluster.tier(gateway_tier)
    services = cluster.tier(service_tier)
    session = Session.of(gateway_tier.url, users[0])
    chat = route("chat")
    with session.client() as client:
        for n in range(REQUESTS):
            response = chat.call(client, f"tok-cluster-{n}")
            assert response.status_code == 200, response.text
            assert response.json()["reply"], response.text

    # The LLM got every chat, from the service tier through its forward.
    assert len(fake_llm.requests()) == REQUESTS

    # Round robin over both gateway hosts, and both gateway hosts over both service hosts.
    front = Counter(upstream_addresses(Path(gateways.access_log), "gateway"))
    gateway_hosts = {f"{h.address}:{gateways.port}" for h in gateways.hosts}
    assert gateway_hosts <= set(front), f"gateway front used only {front}"
    backend = Counter(upstream_addresses(Path(services.access_log), "service"))
    service_hosts = {f"{h.address}:{services.port}" for h in services.hosts}
    assert service_hosts <= set(backend), f"service balancer used only {backend}"


def test_gateway_instance_keeps_its_state_in_the_shared_servers(
    cluster: Cluster, gateway_tier: Running, users: list[User]
) -> None:
    """Users and sessions in the instance's own PostgreSQL database, counters under its prefix."""
    session = Session.of(gateway_tier.url, users[1])
    with session.client() as client:
        response = route("chat").call(client, "tok-cluster-state")
        assert response.status_code == 200, response.text
    instance = cluster.tier(gateway_tier).instance
    assert instance["database"] in cluster.postgres.databases("pxc_")
    with psycopg.connect(instance["database_url"], connect_timeout=5) as conn:
        names = {row[0] for row in conn.execute("SELECT username FROM auth_user").fetchall()}
        (sessions,) = conn.execute("SELECT count(*) FROM django_session").fetchone() or (0,)
    assert {u.username for u in users} <= names
    assert sessions >= 1, "no session row: the login went elsewhere"
    with redis.Redis.from_url(cluster.redis.url, socket_timeout=5) as client:
        keys = list(client.scan_iter(match=instance["redis_prefix"] + "*", count=1000))
    assert keys, f"no Redis key under {instance['redis_prefix']!r} after the chats"
