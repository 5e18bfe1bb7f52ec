"""Start a whole balanced tier as ONE foreground process the contract harness can manage.

    python -m cluster_tests.launch service --port P
    python -m cluster_tests.launch gateway --port P --state-dir DIR
    python -m cluster_tests.launch prepare DIR          # plug `setup`: database + migrate
    python -m cluster_tests.launch manage DIR ARGS...   # plug `create_user`: manage.py ARGS

Options for measurements (CLUSTER-8, cluster_tests/scale.py): ``--loopback`` runs the
tier as one gunicorn on ``127.0.0.1:P`` in the suite's own namespace (no hosts, no
nginx; ``--workers N`` of them); ``prepare --no-shared DIR`` makes an instance that keeps
its state in the process: no ``DATABASE_URL`` (SQLite in ``DJANGO_DB_PATH``) and no
``REDIS_URL`` (limits counted per worker), for its ``manage`` and its tier alike.

The harness gives a component one loopback port, polls its ``ready`` path there and
stops it with SIGTERM to its process group. So a tier command starts gunicorn on every
host of its tier (``ip netns exec``, 2 workers each), waits until each answers, then
puts an nginx site on ``127.0.0.1:P`` over them, writes its tier record
(cluster_tests/topology.py), and stays in the foreground until SIGTERM/SIGINT or until
the suite that owns the run is gone; then it stops everything it started.

The hosts cannot reach loopback: a URL on 127.0.0.1 the harness gives (the fake LLM,
a fake service) is forwarded by the tier's nginx from the infra address, and the
hosts get the rewritten URL.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

from cluster_tests.balancer import Balancer, Site, forward, listens
from cluster_tests.netns import Host, pid_alive
from cluster_tests.servers import (
    create_database,
    database_prefix,
    drop_database,
    free_port_on,
    redis_prefix,
    run_mark,
)
from cluster_tests.topology import ClusterInfo, HostRecord, TierRecord
from harness.processes import LOOPBACK, ManagedProcess

#: Seconds the hosts have to answer after start (the harness gives the front 30 s).
READY_TIMEOUT = float(os.environ.get("CLUSTER_READY_TIMEOUT", "60"))
#: Seconds a stop waits for every process to exit by itself, together, before SIGKILL
#: (the harness SIGKILLs the launcher 10 s after its SIGTERM).
STOP_TIMEOUT = float(os.environ.get("CLUSTER_STOP_TIMEOUT", "7"))
#: The longest a launcher lives: a forgotten one stops everything by itself.
MAX_LIFETIME = float(os.environ.get("CLUSTER_LAUNCH_MAX_SECONDS", str(6 * 3600)))
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: The most a log relay copies at once (a longer line goes in pieces).
_RELAY_CHUNK = 1 << 20


@dataclass(frozen=True)
class TierKind:
    """How one tier runs: its ASGI application and the path that says it is ready."""

    name: str
    app: str
    ready: str


SERVICE = TierKind("service", "fastapi_service.main:app", "/health")
GATEWAY = TierKind("gateway", "lamla.asgi:application", "/api/health/")


class Stop(Exception):
    """SIGTERM or SIGINT arrived: unwind and stop everything."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Later signals are ignored: the stop that follows must not be cut short.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Stop(f"signal {signum}")


# -- instance state (plug `setup` / `create_user`) -------------------------------------------------
def instance_id(state_dir: Path) -> str:
    """A short id for a gateway instance, stable for its state directory."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]


def instance_state(state_dir: Path) -> dict[str, str]:
    """What ``prepare`` recorded for this instance (empty before it ran)."""
    path = state_dir / "cluster.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


#: ``state`` of an instance made by ``prepare --no-shared``: nothing shared.
LOCAL = "local"
#: What a local instance must not get (nor inherit from the suite's environment).
SHARED_VARIABLES = ("DATABASE_URL", "REDIS_URL", "GATEWAY_REDIS_PREFIX")


def is_local(state: Mapping[str, str]) -> bool:
    """Whether the instance keeps users, sessions and limits in its processes."""
    return state.get("state") == LOCAL


def gateway_env(
    info: ClusterInfo, state: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, str]:
    """The shared-state settings every gateway process of an instance gets."""
    out = dict(env)
    if is_local(state):
        for variable in SHARED_VARIABLES:
            out.pop(variable, None)
        return out
    if url := state.get("database_url"):
        out["DATABASE_URL"] = url
    out["REDIS_URL"] = info.redis_url
    if prefix := state.get("redis_prefix"):
        out["GATEWAY_REDIS_PREFIX"] = prefix
    return out


def prepare(info: ClusterInfo, state_dir: Path, workdir: Path, *, shared: bool = True) -> int:
    """Create the instance's database and migrate it; record it in ``state_dir``.

    ``shared=False``: the instance is local (:data:`LOCAL`): SQLite, migrated in place.
    """
    if not shared:
        state_dir.mkdir(parents=True, exist_ok=True)
        local = json.dumps({"state": LOCAL}, indent=2) + "\n"
        (state_dir / "cluster.json").write_text(local, encoding="utf-8")
        return manage(info, state_dir, workdir, ["migrate", "--noinput", "-v", "0"])
    # Names with the run's mark: the servers may be the machine's own ($DATABASE_URL,
    # $REDIS_URL), and the teardown removes exactly what carries it.
    ident = instance_id(state_dir)
    mark = run_mark(info.tmp_dir)
    name = f"{database_prefix(mark)}{ident}"
    drop_database(info.postgres_admin_url, name)
    create_database(info.postgres_admin_url, name)
    state = {
        "database": name,
        "database_url": info.database_url(name),
        "redis_prefix": f"{redis_prefix(mark)}{ident}:",
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "cluster.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    return manage(info, state_dir, workdir, ["migrate", "--noinput", "-v", "0"])


def manage(info: ClusterInfo, state_dir: Path, workdir: Path, args: Sequence[str]) -> int:
    """``python manage.py ARGS`` against the instance's database (e.g. ensure_user)."""
    env = gateway_env(info, instance_state(state_dir), os.environ)
    argv = [sys.executable, "manage.py", *args]
    return subprocess.run(argv, cwd=workdir, env=env, timeout=300, check=False).returncode


# -- tiers ---------------------------------------------------------------------------------------
def is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK_HOSTS


def with_netloc(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


class LogRelay:
    """Copies what each host appends to its own log into the launcher's stdout.

    The harness reads a component's log (the launcher's stdout) to check what the
    server logged (GW-PROXY-7, SEC-2); the hosts log to files of their own, so a
    thread follows those files, whole lines at a time, verbatim.
    """

    def __init__(self, paths: Sequence[Path], out: BinaryIO, *, interval: float = 0.05) -> None:
        self.offsets = {path: 0 for path in paths}
        self.out = out
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-relay", daemon=True)

    def start(self) -> LogRelay:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):  # ends with the launcher (stop())
            self.drain()

    def drain(self) -> None:
        for path, offset in self.offsets.items():
            try:
                with path.open("rb") as log:
                    log.seek(offset)
                    chunk = log.read(_RELAY_CHUNK)
            except OSError:
                continue
            whole = chunk[: chunk.rfind(b"\n") + 1] if len(chunk) < _RELAY_CHUNK else chunk
            if whole:
                self.offsets[path] = offset + len(whole)
                self.out.write(whole)
                self.out.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.drain()


class Tier:
    """The hosts of one tier, their nginx, and the forwards they need; stopped together."""

    def __init__(
        self,
        info: ClusterInfo,
        kind: TierKind,
        port: int,
        *,
        workdir: Path,
        env: Mapping[str, str],
        workers: int,
    ) -> None:
        self.info = info
        self.kind = kind
        self.port = port
        self.workdir = workdir
        self.env = dict(env)
        self.workers = workers
        self.hosts = info.tier_hosts(kind.name)
        self.log_dir = info.run_dir / "launch" / f"{kind.name}-{port}"
        self.balancer = Balancer(
            info.tmp_dir / "lb" / f"{kind.name}-{port}", self.log_dir, name=f"nginx-{kind.name}"
        )
        self.processes: dict[str, ManagedProcess] = {}
        self.forwards: dict[str, str] = {}
        self.rewritten: dict[str, str] = {}
        self.instance: dict[str, str] = {}
        self.relay: LogRelay | None = None

    # -- reaching loopback from the hosts ----------------------------------------------------------
    def reach(self, variable: str, site: str) -> None:
        """Make ``env[variable]`` (a URL) reachable from the hosts: rewrite a loopback URL."""
        url = self.env.get(variable, "")
        if not url or not is_loopback(url):
            return
        target_port = urlsplit(url).port or 80
        record = TierRecord.load(self.info.run_dir, SERVICE.name, target_port)
        infra = self.info.infra_address
        if record is not None and f"{infra}:{target_port}" in record.listen:
            new = with_netloc(url, infra, target_port)  # a service tier listens there already
        else:
            port = free_port_on(infra)
            self.balancer.add(forward(site, f"{infra}:{port}", f"{LOOPBACK}:{target_port}"))
            self.forwards[site] = f"{infra}:{port} -> {LOOPBACK}:{target_port}"
            new = with_netloc(url, infra, port)
        self.env[variable] = new
        self.rewritten[variable] = new

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> TierRecord:
        self.balancer.start()  # the forwards (if any) before the hosts that use them
        for host in self.hosts:
            self.processes[host.name] = self._spawn(host).start()
        self.relay = LogRelay([p.log for p in self.processes.values()], sys.stdout.buffer).start()
        self._wait_hosts()
        front = f"{LOOPBACK}:{self.port}"
        addresses = [LOOPBACK]
        if self.kind is SERVICE:  # gateways on the hosts reach the service tier here
            addresses.append(self.info.infra_address)
        upstreams = tuple(f"{h.address}:{self.port}" for h in self.hosts)
        record = TierRecord(
            tier=self.kind.name,
            port=self.port,
            front=front,
            listen=list(listens(addresses, self.port)),
            launcher_pid=os.getpid(),
            hosts=[
                HostRecord(
                    h.name,
                    h.address,
                    f"http://{h.address}:{self.port}",
                    self.processes[h.name].pid,
                    str(self.processes[h.name].log),
                    self._metrics_url(h.address),
                )
                for h in self.hosts
            ],
            access_log=str(self.balancer.access_log),
            error_log=str(self.balancer.error_log),
            forwards=self.forwards,
            rewritten=self.rewritten,
            instance=self.instance,
        )
        # Written before the front serves: the harness's readiness poll of the front is
        # what tells a test the tier is up, and the record must exist by then.
        record.write(self.info.run_dir)
        self.balancer.add(Site(self.kind.name, listens(addresses, self.port), upstreams))
        self.balancer.reload()
        balancer = self.balancer.process
        assert balancer is not None  # started above
        balancer.wait_ready(f"http://{front}{self.kind.ready}", timeout=READY_TIMEOUT)
        return record

    def _spawn(self, host: Host) -> ManagedProcess:
        argv = [
            sys.executable, "-m", "gunicorn", self.kind.app,
            *self._config_args(),
            "--bind", f"{host.address}:{self.port}",
            "--workers", str(self.workers),
            *self._control_socket(host),
        ]  # fmt: skip
        return ManagedProcess(
            f"{self.kind.name}-{host.name}",
            host.exec_argv(argv),
            cwd=self.workdir,
            env=self._host_env(host),
            log=self.log_dir / f"{host.name}.log",
        )

    def _host_env(self, host: Host) -> dict[str, str]:
        """The tier's environment, with the metrics (if any) on the host's own address:
        its 127.0.0.1 is the namespace's, which the suite cannot reach."""
        if not self.env.get("METRICS_PORT"):
            return self.env
        return {**self.env, "METRICS_HOST": host.address}

    def _metrics_url(self, address: str) -> str:
        port = self.env.get("METRICS_PORT")
        return f"http://{address}:{port}/metrics" if port else ""

    def _config_args(self) -> list[str]:
        """The deployment's gunicorn config, or uvicorn's worker when there is none yet."""
        if (self.workdir / "deploy" / "gunicorn.conf.py").is_file():
            return ["-c", "deploy/gunicorn.conf.py"]
        return ["-k", "uvicorn_worker.UvicornWorker"]

    def _control_socket(self, host: Host) -> list[str]:
        """gunicorn >= 27 opens a control socket, by default one path for every master
        (~/.gunicorn/gunicorn.ctl): give each host its own, inside the run's temp dir."""
        if "control_socket" not in gunicorn_settings():
            return []
        directory = self.info.tmp_dir / "ctl"
        directory.mkdir(parents=True, exist_ok=True)
        return ["--control-socket", str(directory / f"{self.kind.name}-{self.port}-{host.name}")]

    def _wait_hosts(self) -> None:
        for host in self.hosts:
            url = f"http://{host.address}:{self.port}{self.kind.ready}"
            self.processes[host.name].wait_ready(url, timeout=READY_TIMEOUT)

    def stop(self) -> None:
        """Stop nginx first (no new requests), then every host at once, within STOP_TIMEOUT."""
        self.balancer.stop(timeout=2.0)
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in running:
            process.wait_exit(max(0.0, deadline - time.monotonic()))
        for process in self.processes.values():
            process.stop(timeout=1.0)  # SIGKILLs what is left, reaps the group
        if self.relay is not None:
            self.relay.stop()


class LoopbackTier(Tier):
    """A tier as ONE gunicorn on ``127.0.0.1:P`` in the suite's namespace: no hosts, no nginx.

    What "N workers" means in the CLUSTER-8 figures: the gateway alone on this machine,
    clients straight to gunicorn, so nothing but the gateway (and its shared state) is
    measured. Stopped like a tier (:meth:`Tier.stop`: the balancer never started).
    """

    NAME = "loopback"

    def start(self) -> TierRecord:
        front = f"{LOOPBACK}:{self.port}"
        argv = [
            sys.executable, "-m", "gunicorn", self.kind.app,
            *self._config_args(),
            "--bind", front,
            "--workers", str(self.workers),
            *self._named_control_socket(self.NAME),
        ]  # fmt: skip
        process = ManagedProcess(
            f"{self.kind.name}-{self.NAME}",
            argv,
            cwd=self.workdir,
            env=self.env,
            log=self.log_dir / f"{self.NAME}.log",
        ).start()
        self.processes[self.NAME] = process
        self.relay = LogRelay([process.log], sys.stdout.buffer).start()
        record = TierRecord(
            tier=self.kind.name,
            port=self.port,
            front=front,
            listen=[front],
            launcher_pid=os.getpid(),
            hosts=[
                HostRecord(
                    self.NAME,
                    LOOPBACK,
                    f"http://{front}",
                    process.pid,
                    str(process.log),
                    self._metrics_url(LOOPBACK),
                )
            ],
            access_log="",
            error_log="",
            rewritten=self.rewritten,
            instance=self.instance,
        )
        # Written before gunicorn serves: the harness's readiness poll of the front is
        # what tells a test the tier is up, and the record must exist by then.
        record.write(self.info.run_dir)
        process.wait_ready(f"http://{front}{self.kind.ready}", timeout=READY_TIMEOUT)
        return record

    def _named_control_socket(self, name: str) -> list[str]:
        """As :meth:`Tier._control_socket`, for a process that is no host."""
        if "control_socket" not in gunicorn_settings():
            return []
        directory = self.info.tmp_dir / "ctl"
        directory.mkdir(parents=True, exist_ok=True)
        return ["--control-socket", str(directory / f"{self.kind.name}-{self.port}-{name}")]


def gunicorn_settings() -> frozenset[str]:
    """The setting names the installed gunicorn knows."""
    from gunicorn.config import KNOWN_SETTINGS

    return frozenset(setting.name for setting in KNOWN_SETTINGS)


def serve(tier: Tier) -> int:
    """Start ``tier`` and hold it until a signal, the owner's exit, or MAX_LIFETIME."""
    try:
        record = tier.start()
        print(f"{tier.kind.name} ready on {record.front}: {[h.url for h in record.hosts]}")
        sys.stdout.flush()
        deadline = time.monotonic() + MAX_LIFETIME
        while time.monotonic() < deadline:
            if not pid_alive(tier.info.owner_pid):
                print(f"owner {tier.info.owner_pid} is gone: stopping")
                break
            time.sleep(0.5)  # waiting for a signal; the owner check is the only work
        return 0
    except Stop as stop:
        print(f"stopping on {stop}")
        return 0
    finally:
        with contextlib.suppress(Stop):
            tier.stop()


def run_tier(kind: TierKind, args: argparse.Namespace, info: ClusterInfo) -> int:
    workdir = Path.cwd()
    env = dict(os.environ)
    loopback = getattr(args, "loopback", False)
    tier_class = LoopbackTier if loopback else Tier
    tier = tier_class(info, kind, args.port, workdir=workdir, env=env, workers=args.workers)
    if kind is SERVICE:
        if not loopback:  # on loopback, loopback URLs need no forward
            tier.reach("LLM_BASE_URL", "llm")
    else:
        if not loopback:
            tier.reach("SERVICE_BASE_URL", "upstream")
        tier.instance = instance_state(Path(args.state_dir)) if args.state_dir else {}
        if getattr(args, "no_shared", False):
            tier.instance = {**tier.instance, "state": LOCAL}
        tier.env = gateway_env(info, tier.instance, tier.env)
        if loopback:  # no hosts, no balancer in front: nothing to allow or trust
            return serve(tier)
        addresses = [h.address for h in tier.hosts] + [info.infra_address]
        allowed = [a for a in tier.env.get("DJANGO_ALLOWED_HOSTS", "").split(",") if a]
        tier.env["DJANGO_ALLOWED_HOSTS"] = ",".join(dict.fromkeys([*allowed, *addresses]))
        trusted = [p for p in tier.env.get("GATEWAY_TRUSTED_PROXIES", "").split(",") if p]
        tier.env["GATEWAY_TRUSTED_PROXIES"] = ",".join(
            dict.fromkeys([info.infra_address, *trusted])
        )
    return serve(tier)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m cluster_tests.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)
    for kind in (SERVICE, GATEWAY):
        tier = sub.add_parser(kind.name, help=f"start the {kind.name} tier on every host")
        tier.add_argument("--port", type=int, required=True, help="the port on 127.0.0.1")
        tier.add_argument("--workers", type=int, default=None, help="per host (default: run's)")
        tier.add_argument(
            "--loopback",
            action="store_true",
            help="one gunicorn on 127.0.0.1:PORT here, no hosts, no nginx",
        )
        if kind is GATEWAY:
            tier.add_argument("--state-dir", default="", help="the instance's {state_dir}")
            tier.add_argument(
                "--no-shared",
                action="store_true",
                help="no DATABASE_URL, no REDIS_URL (also implied by `prepare --no-shared`)",
            )
    prep = sub.add_parser("prepare", help="create the instance's database and migrate it")
    prep.add_argument("state_dir")
    prep.add_argument(
        "--no-shared",
        action="store_true",
        help="a local instance: SQLite in DJANGO_DB_PATH, limits in the process",
    )
    man = sub.add_parser("manage", help="manage.py ARGS against the instance's database")
    man.add_argument("state_dir")
    man.add_argument("args", nargs=argparse.REMAINDER)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    info = ClusterInfo.load()
    if args.command == "prepare":
        return prepare(info, Path(args.state_dir), Path.cwd(), shared=not args.no_shared)
    if args.command == "manage":
        return manage(info, Path(args.state_dir), Path.cwd(), args.args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    args.workers = args.workers or info.workers
    kind = SERVICE if args.command == SERVICE.name else GATEWAY
    return run_tier(kind, args, info)


if __name__ == "__main__":
    sys.exit(main())
