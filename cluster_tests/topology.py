"""The run's shared topology: the JSON the session fixture writes and every launcher reads.

The contract harness starts a tier as one command line from a plug file; that
command cannot be handed Python objects, so it finds the hosts, the infra address
and the shared servers in the file named by ``$CLUSTER_TOPOLOGY``. Each launcher
answers with a *tier record* (``<run_dir>/tiers/<tier>-<port>.json``): its hosts,
where they listen, its logs, so tests can find a tier from the port the harness gave it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster_tests.netns import Host

ENV = "CLUSTER_TOPOLOGY"
VERSION = 1


@dataclass(frozen=True)
class ClusterInfo:
    """What every launcher needs to know about the run (``$CLUSTER_TOPOLOGY``)."""

    run_id: str
    owner_pid: int
    run_dir: Path
    tmp_dir: Path
    infra_address: str
    network: str
    mode: str
    hosts: dict[str, Host]
    #: Tier name -> host names, in order.
    tiers: dict[str, list[str]]
    workers: int
    redis_url: str
    postgres_admin_url: str

    def tier_hosts(self, tier: str) -> list[Host]:
        return [self.hosts[name] for name in self.tiers[tier]]

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` on the run's PostgreSQL server."""
        base, _, _ = self.postgres_admin_url.rpartition("/")
        return f"{base}/{name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "run_id": self.run_id,
            "owner_pid": self.owner_pid,
            "run_dir": str(self.run_dir),
            "tmp_dir": str(self.tmp_dir),
            "infra_address": self.infra_address,
            "network": self.network,
            "mode": self.mode,
            "hosts": {name: host.to_json() for name, host in self.hosts.items()},
            "tiers": self.tiers,
            "workers": self.workers,
            "redis_url": self.redis_url,
            "postgres_admin_url": self.postgres_admin_url,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterInfo:
        if data.get("version") != VERSION:
            raise ValueError(f"topology version {data.get('version')!r}, expected {VERSION}")
        return cls(
            run_id=data["run_id"],
            owner_pid=int(data["owner_pid"]),
            run_dir=Path(data["run_dir"]),
            tmp_dir=Path(data["tmp_dir"]),
            infra_address=data["infra_address"],
            network=data["network"],
            mode=data["mode"],
            hosts={name: Host.from_json(name, h) for name, h in data["hosts"].items()},
            tiers={tier: list(names) for tier, names in data["tiers"].items()},
            workers=int(data["workers"]),
            redis_url=data["redis_url"],
            postgres_admin_url=data["postgres_admin_url"],
        )

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> ClusterInfo:
        """Read ``path``, or the file ``$CLUSTER_TOPOLOGY`` names."""
        where = path or os.environ.get(ENV)
        if not where:
            raise RuntimeError(f"${ENV} is not set: the cluster suite's session fixture sets it")
        return cls.from_json(json.loads(Path(where).read_text(encoding="utf-8")))


@dataclass(frozen=True)
class HostRecord:
    name: str
    address: str
    url: str
    pid: int
    log: str
    #: Where its gunicorn master serves every worker's metrics ("" when the tier has none).
    metrics: str = ""


@dataclass(frozen=True)
class TierRecord:
    """What a launcher started: written once its tier is ready."""

    tier: str
    port: int
    front: str
    listen: list[str]
    launcher_pid: int
    hosts: list[HostRecord]
    access_log: str
    error_log: str
    #: Site name -> "listen -> target" of the forwards it made (the hosts' way to loopback).
    forwards: dict[str, str] = field(default_factory=dict)
    #: The environment values the launcher rewrote for its hosts.
    rewritten: dict[str, str] = field(default_factory=dict)
    #: A gateway instance's shared state (``prepare``): database, database_url, redis_prefix.
    instance: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def path(run_dir: Path, tier: str, port: int) -> Path:
        return run_dir / "tiers" / f"{tier}-{port}.json"

    def write(self, run_dir: Path) -> Path:
        path = self.path(run_dir, self.tier, self.port)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)  # readers never see half a file
        return path

    @classmethod
    def load(cls, run_dir: Path, tier: str, port: int) -> TierRecord | None:
        path = cls.path(run_dir, tier, port)
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        data["hosts"] = [HostRecord(**h) for h in data["hosts"]]
        return cls(**data)
