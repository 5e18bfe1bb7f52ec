"""Build the whole cluster of a run, and take it all down again: the hosts and shared servers.

:func:`running_cluster` is what the session fixture (cluster_tests/conftest.py) uses,
and what any other pytest run that starts tiers through ``cluster.toml`` can use (a
plugin): it sweeps leftovers of dead runs, makes the 4 hosts, starts Redis and
PostgreSQL on the infra address (or, with ``$REDIS_URL`` / ``$DATABASE_URL``,
forwarders from there to those servers), writes ``$CLUSTER_TOPOLOGY``, and on exit
(also on an exception, and at interpreter exit) removes everything in reverse order,
the run's databases and keys on those servers included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cluster_tests import cleanup
from cluster_tests.netns import Mode, Topology
from cluster_tests.servers import (
    ForwardedPostgres,
    ForwardedRedis,
    PostgresServer,
    RedisServer,
    database_prefix,
    pg_bindir,
    redis_prefix,
    run_mark,
)
from cluster_tests.topology import ENV, ClusterInfo, TierRecord
from harness.system import Running

#: Tier name -> its hosts (network namespaces).
TIERS = {"gateway": ["gw1", "gw2"], "service": ["svc1", "svc2"]}
WORKERS_PER_HOST = 2
#: The servers the machine already runs, used (with a forwarder) instead of private ones.
REDIS_ENV = "REDIS_URL"
DATABASE_ENV = "DATABASE_URL"


def missing_prerequisites() -> list[str]:
    """Why this machine cannot build the cluster (empty when it can)."""
    missing = [] if os.geteuid() == 0 else ["root (ip netns, postgres user)"]
    missing += [f"`{tool}` on PATH" for tool in _needed() if shutil.which(tool) is None]
    if not os.environ.get(DATABASE_ENV):
        try:
            pg_bindir()
        except RuntimeError as exc:
            missing.append(str(exc))
    return missing


def _needed() -> list[str]:
    """The tools this run starts: a private server only for what no URL names."""
    redis_url, database_url = (os.environ.get(name) for name in (REDIS_ENV, DATABASE_ENV))
    tools = ["ip", "nginx"]
    tools += [] if redis_url else ["redis-server"]
    tools += [] if database_url else ["setpriv", "runuser"]
    return tools + (["socat"] if redis_url or database_url else [])


def netns_mode() -> Mode | None:
    """``$CLUSTER_NETNS_MODE``: ``bridge`` or ``routed`` to force one; unset: probe."""
    value = os.environ.get("CLUSTER_NETNS_MODE", "")
    if value not in ("", "bridge", "routed"):
        raise ValueError(f"CLUSTER_NETNS_MODE={value!r}: bridge, routed or unset")
    return cast("Mode | None", value or None)


@dataclass
class Cluster:
    """Everything a run built, for tests that take parts of it away."""

    topology: Topology
    info: ClusterInfo
    #: ``stop()``/``start()`` are an outage: of the private server, or of the forwarder
    #: to ``$REDIS_URL``'s (a server the suite does not own is never restarted).
    redis: RedisServer | ForwardedRedis
    postgres: PostgresServer | ForwardedPostgres
    run_dir: Path
    topology_file: Path

    def tier(self, running: Running) -> TierRecord:
        """The tier record of a component the harness started (its hosts, its logs)."""
        record = TierRecord.load(self.run_dir, running.component.name, running.port)
        assert record is not None, f"no tier record for {running.name} on port {running.port}"
        return record


@contextlib.contextmanager
def running_cluster(base_dir: Path, *, mode: Mode | None = None) -> Iterator[Cluster]:
    """The hosts and shared servers of one run, logging to ``base_dir/<time>-pxc<pid>/``."""
    for item in cleanup.sweep():
        print(f"swept leftover of a dead run: {item}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = base_dir / f"{stamp}-pxc{os.getpid()}"
    (run_dir / "servers").mkdir(parents=True, exist_ok=True)
    with cleanup.Teardown() as teardown:
        tmp_dir = cleanup.run_temp_dir()
        teardown.later(shutil.rmtree, tmp_dir, True)
        names = [h for hs in TIERS.values() for h in hs]
        topology = teardown.enter_context(Topology(names, mode=mode))
        infra = topology.infra_address
        mark = run_mark(tmp_dir)
        redis = _redis(topology, tmp_dir, run_dir / "servers")
        if isinstance(redis, ForwardedRedis):  # runs after redis.stop (LIFO): no writer left
            teardown.later(redis.delete_keys, redis_prefix(mark))
        teardown.later(redis.stop)
        redis.start()
        postgres = _postgres(topology, tmp_dir, run_dir / "servers")
        teardown.later(postgres.stop)
        postgres.start()
        # Runs before postgres.stop (LIFO); only this run's databases.
        teardown.later(_drop_databases, postgres, database_prefix(mark))
        info = ClusterInfo(
            run_id=topology.prefix,
            owner_pid=os.getpid(),
            run_dir=run_dir,
            tmp_dir=tmp_dir,
            infra_address=infra,
            network=str(topology.network),
            mode=topology.mode,
            hosts=dict(topology.hosts),
            tiers=TIERS,
            workers=WORKERS_PER_HOST,
            redis_url=redis.url,
            postgres_admin_url=postgres.admin_url,
        )
        topology_file = info.write(run_dir / "topology.json")
        os.environ[ENV] = str(topology_file)
        teardown.later(os.environ.pop, ENV, None)
        yield Cluster(topology, info, redis, postgres, run_dir, topology_file)


def _redis(topology: Topology, tmp_dir: Path, log_dir: Path) -> RedisServer | ForwardedRedis:
    """``$REDIS_URL``'s server through a forwarder when set, else a private one."""
    if url := os.environ.get(REDIS_ENV):
        return ForwardedRedis(url, topology.infra_address, tmp_dir / "redis-forward", log_dir)
    return RedisServer(topology.infra_address, tmp_dir / "redis", log_dir)


def _postgres(
    topology: Topology, tmp_dir: Path, log_dir: Path
) -> PostgresServer | ForwardedPostgres:
    """``$DATABASE_URL``'s server through a forwarder when set, else a private one."""
    infra = topology.infra_address
    if url := os.environ.get(DATABASE_ENV):
        return ForwardedPostgres(url, infra, tmp_dir / "pg-forward", log_dir)
    return PostgresServer(infra, str(topology.network), tmp_dir / "pg", log_dir)


def _drop_databases(postgres: PostgresServer | ForwardedPostgres, prefix: str) -> None:
    for name in postgres.databases(prefix):
        postgres.drop_database(name)
