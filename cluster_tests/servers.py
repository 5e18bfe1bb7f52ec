"""Redis and PostgreSQL for one run: private servers, or the machine's own through a forwarder.

The private ones are started from the system's binaries: both bind the infra address
of the topology (so every host reaches them) and a unix socket in a private temp
directory, keep no data worth keeping (no fsync, no snapshots) and run through
:class:`harness.processes.ManagedProcess`, so they are stopped at interpreter exit
even when the run is interrupted.

With ``$REDIS_URL`` / ``$DATABASE_URL`` the run uses those servers instead. They
usually listen on 127.0.0.1, which the hosts (network namespaces) cannot reach, so a
``socat`` forwarder (also a ManagedProcess) relays the infra address to them; the
run's state there carries the run's mark (:func:`run_mark`) and is removed at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

from cluster_tests.cleanup import OWNER_ENV
from cluster_tests.netns import PREFIX
from harness.processes import ManagedProcess, StartupError, run_command, tail

REDIS_SERVER = os.environ.get("CLUSTER_REDIS_SERVER", "redis-server")
SOCAT = os.environ.get("CLUSTER_SOCAT", "socat")
#: The system user PostgreSQL runs as: ``initdb`` and ``postgres`` refuse root.
PG_USER = "postgres"


def free_port_on(address: str) -> int:
    """A TCP port free on ``address`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def pg_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` (or ``$CLUSTER_PG_BIN``)."""
    if env := os.environ.get("CLUSTER_PG_BIN"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    if not found:
        raise StartupError("no PostgreSQL server in /usr/lib/postgresql/*/bin (CLUSTER_PG_BIN)")
    return Path(found[-1]).parent


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parents[1].name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _poll(check: object, what: str, process: ManagedProcess, timeout: float) -> None:
    """Call ``check()`` until it returns True, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise StartupError(
                f"{what} exited with {code} before it was ready:\n{tail(process.log)}"
            )
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:  # any failure means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)  # poll interval
    process.stop()
    raise StartupError(f"{what} not ready after {timeout}s ({last}):\n{tail(process.log)}")


# -- Redis ----------------------------------------------------------------------------------------
class RedisServer:
    """``redis-server`` without persistence on ``address:port`` and a unix socket.

    ``stop()`` then ``start()`` brings it back on the same port, empty: a test can
    restart Redis under load and watch the gateways reconnect.
    """

    def __init__(self, address: str, directory: Path, log_dir: Path) -> None:
        self.address = address
        self.directory = directory
        self.log = log_dir / "redis.log"
        self.port = free_port_on(address)
        self.socket_path = directory / "redis.sock"
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    @property
    def process(self) -> ManagedProcess | None:
        return self._process

    def argv(self) -> list[str]:
        return [
            REDIS_SERVER,
            "--save", "",
            "--appendonly", "no",
            "--bind", self.address,
            "--port", str(self.port),
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--protected-mode", "no",
            "--daemonize", "no",
            "--maxclients", "4000",
        ]  # fmt: skip

    def start(self, timeout: float = 15.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        process = ManagedProcess(
            "redis", self.argv(), cwd=self.directory, env=dict(os.environ), log=self.log
        )
        self._process = process.start()
        _poll(self.ping, f"redis on {self.address}:{self.port}", process, timeout)
        return self

    def ping(self) -> bool:
        """One PING over TCP, as a host would send it."""
        with socket.create_connection((self.address, self.port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.stop(timeout=timeout)
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


# -- PostgreSQL -----------------------------------------------------------------------------------
def connect_admin(url: str, timeout: float = 2.0) -> psycopg.Connection:
    """An autocommit connection for CREATE/DROP DATABASE (they refuse transactions)."""
    return psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))


def create_database(admin_url: str, name: str) -> None:
    with connect_admin(admin_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name`` even with clients still connected (a gateway's pool)."""
    with connect_admin(admin_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def list_databases(admin_url: str, prefix: str) -> list[str]:
    with connect_admin(admin_url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        ).fetchall()
    return sorted(str(row[0]) for row in rows)


class _Databases:
    """The databases of one PostgreSQL server, managed over ``_target`` (its real URL)."""

    @property
    def _target(self) -> str:
        raise NotImplementedError

    def url(self, dbname: str = "postgres") -> str:
        raise NotImplementedError

    def _ready(self) -> bool:
        with connect_admin(self.admin_url, timeout=1.0) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def create_database(self, name: str) -> str:
        """Create ``name``; returns the URL the hosts reach it at."""
        create_database(self._target, name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        drop_database(self._target, name)

    def databases(self, prefix: str) -> list[str]:
        return list_databases(self._target, prefix)


class PostgresServer(_Databases):
    """A throw-away PostgreSQL cluster: trust auth from the topology's /24, fsync off.

    ``initdb`` runs as the ``postgres`` user into a directory it owns; the server runs
    in the foreground (``setpriv`` execs it as ``postgres``, same pid) so that
    ManagedProcess owns it; ``stop()`` asks for a fast shutdown and removes the data.
    """

    def __init__(
        self,
        address: str,
        network: str,
        directory: Path,
        log_dir: Path,
        *,
        max_connections: int = 200,
    ) -> None:
        self.address = address
        self.network = network
        self.directory = directory
        self.data_dir = directory / "data"
        self.socket_dir = directory / "sock"
        self.log = log_dir / "postgres.log"
        self.port = free_port_on(address)
        self.max_connections = max_connections
        self.bindir = pg_bindir()
        self._process: ManagedProcess | None = None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://{PG_USER}@{self.address}:{self.port}/{dbname}"

    @property
    def _target(self) -> str:
        return self.admin_url

    def start(self, timeout: float = 60.0) -> PostgresServer:
        self._initdb()
        argv = [
            "setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", "--",
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"listen_addresses={self.address}",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", f"max_connections={self.max_connections}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "shared_buffers=64MB",
        ]  # fmt: skip
        env = {**os.environ, "HOME": str(self.directory), "LC_ALL": "C.UTF-8"}
        process = ManagedProcess("postgres", argv, cwd=self.directory, env=env, log=self.log)
        self._process = process.start()
        _poll(self._ready, f"postgres on {self.address}:{self.port}", process, timeout)
        return self

    def _initdb(self) -> None:
        account = pwd.getpwnam(PG_USER)
        for path in (self.directory, self.data_dir, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, account.pw_uid, account.pw_gid)
            path.chmod(0o700)
        argv = [
            "runuser", "-u", PG_USER, "--",
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", PG_USER,
            "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
            "--no-sync", "--no-instructions",
        ]  # fmt: skip
        env = {**os.environ, "HOME": str(self.directory), "LC_ALL": "C.UTF-8"}
        run_command(argv, cwd=self.directory, env=env, log=self.log, timeout=120.0)
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# written by cluster_tests/servers.py: a private server, trust from our hosts only\n"
            f"local all all trust\n"
            f"host all all 127.0.0.1/32 trust\n"
            f"host all all {self.network} trust\n",
            encoding="utf-8",
        )

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT: clients are cut, no wait for them), then remove the data."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGINT)
                process.wait_exit(timeout)
            process.stop(timeout=5.0)
        shutil.rmtree(self.directory, ignore_errors=True)


# -- the run's mark on a shared server ------------------------------------------------------------
def run_mark(tmp_dir: Path) -> str:
    """The run's pid and its temp dir's random part (``/tmp/pxc<pid>-<random>``).

    What names the run's state on a server others use too: the pid alone may repeat on
    another machine (or container) using the same server.
    """
    return tmp_dir.name.removeprefix(PREFIX).replace("-", "_")


def database_prefix(mark: str) -> str:
    """The run's databases: ``pxc_<mark>_<instance>``."""
    return f"{PREFIX}_{mark}_"


def redis_prefix(mark: str) -> str:
    """The run's Redis keys: ``pxc<mark>:<instance>:...``."""
    return f"{PREFIX}{mark}:"


# -- servers the suite does not own ---------------------------------------------------------------
def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


def target_of(url: str, default_port: int) -> tuple[str, int]:
    """The TCP ``(host, port)`` a server URL names."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise StartupError(f"{redacted(url)}: no host in it (a unix socket cannot be forwarded)")
    return parts.hostname, parts.port or default_port


def via(url: str, address: str, port: int) -> str:
    """``url`` with its host and port replaced (user, password, path and query kept)."""
    parts = urlsplit(url)
    user, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}{at}{address}:{port}"))


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _tcp_open(address: str, port: int) -> bool:
    with socket.create_connection((address, port), timeout=1.0):
        return True


class Forwarder:
    """``socat`` relaying TCP from ``address:port`` (the infra address) to a server elsewhere.

    The hosts reach nothing of the root namespace but the infra address, and there is no
    iptables to DNAT with: a plain relay, one child per connection, all in the process
    group ManagedProcess stops. Stopping it cuts every relayed connection and refuses new
    ones; starting it again listens on the same port.
    """

    def __init__(
        self, name: str, address: str, target: tuple[str, int], directory: Path, log_dir: Path
    ) -> None:
        self.name = name
        self.address = address
        self.target = target
        self.directory = directory
        self.log = log_dir / f"{name}.log"
        self.port = free_port_on(address)
        self._process: ManagedProcess | None = None

    @property
    def process(self) -> ManagedProcess | None:
        return self._process

    def argv(self) -> list[str]:
        host, port = self.target
        connect = f"TCP6:[{host}]:{port}" if ":" in host else f"TCP4:{host}:{port}"
        listen = f"TCP4-LISTEN:{self.port},bind={self.address},reuseaddr,fork,backlog=1024"
        return [SOCAT, f"{listen},nodelay", f"{connect},nodelay"]

    def start(self, timeout: float = 10.0) -> Forwarder:
        """Listening once it returns; runs in the run's temp dir with the owner's pid in its
        environment, so the sweep (cleanup.py) finds it if the run dies without stopping it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, OWNER_ENV: str(os.getpid())}
        process = ManagedProcess(self.name, self.argv(), cwd=self.directory, env=env, log=self.log)
        self._process = process.start()
        where = f"{self.name} on {self.address}:{self.port}"
        _poll(lambda: _tcp_open(self.address, self.port), where, process, timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._process is not None:
            self._process.stop(timeout=timeout)
            self._process = None


class ForwardedRedis:
    """The Redis of ``$REDIS_URL``, which the suite does not own, reached through a forwarder.

    Same API as :class:`RedisServer`, but ``stop()``/``start()`` stop and start the
    *forwarder*, never the server (others use it): the gateways lose Redis as in an
    outage (relayed connections cut, new ones refused) and find it again on the same
    address, with its data (a restarted private server comes back empty).
    ``delete_keys`` removes the run's keys, on the server itself.
    """

    def __init__(self, target_url: str, address: str, directory: Path, log_dir: Path) -> None:
        self.target_url = target_url
        target = target_of(target_url, 6379)
        self.forwarder = Forwarder("redis-forward", address, target, directory, log_dir)

    @property
    def address(self) -> str:
        return self.forwarder.address

    @property
    def port(self) -> int:
        return self.forwarder.port

    @property
    def url(self) -> str:
        """The server through the forwarder: what the hosts (and the root namespace) use."""
        return via(self.target_url, self.address, self.port)

    @property
    def process(self) -> ManagedProcess | None:
        """The forwarder's process: None while "Redis" is away."""
        return self.forwarder.process

    def start(self, timeout: float = 15.0) -> ForwardedRedis:
        self.forwarder.start()
        assert self.forwarder.process is not None
        _poll(self.ping, f"redis {redacted(self.url)}", self.forwarder.process, timeout)
        return self

    def ping(self) -> bool:
        """One PING through the forwarder, as a host would send it."""
        with redis.Redis.from_url(self.url, socket_timeout=1.0) as client:
            return bool(client.ping())

    def stop(self, timeout: float = 5.0) -> None:
        self.forwarder.stop(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def delete_keys(self, prefix: str) -> int:
        """SCAN + DEL every key under ``prefix`` (never FLUSHDB: others' keys stay)."""
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
        deleted = 0
        with redis.Redis.from_url(self.target_url, socket_timeout=10.0) as client:
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(client.delete(*batch))
        return deleted


class ForwardedPostgres(_Databases):
    """The PostgreSQL of ``$DATABASE_URL``, which the suite does not own: the run's databases
    are made on it, and the hosts reach it through a forwarder.

    Same API as :class:`PostgresServer`. The URLs it hands out (``url()``,
    ``admin_url``) go through the forwarder, so hosts and root namespace alike can use
    them; ``create_database``/``drop_database``/``databases`` go to the server directly,
    so the teardown can drop the run's databases whatever became of the forwarder.
    ``stop()`` stops the forwarder only.
    """

    def __init__(self, target_url: str, address: str, directory: Path, log_dir: Path) -> None:
        self.target_url = target_url
        target = target_of(target_url, 5432)
        self.forwarder = Forwarder("postgres-forward", address, target, directory, log_dir)
        self.admin_database = urlsplit(target_url).path.lstrip("/") or PG_USER

    @property
    def address(self) -> str:
        return self.forwarder.address

    @property
    def port(self) -> int:
        return self.forwarder.port

    def url(self, dbname: str = "postgres") -> str:
        return via(with_database(self.target_url, dbname), self.address, self.port)

    @property
    def admin_url(self) -> str:
        return self.url(self.admin_database)

    def start(self, timeout: float = 30.0) -> ForwardedPostgres:
        self.forwarder.start()
        assert self.forwarder.process is not None
        where = f"postgres {redacted(self.admin_url)}"
        _poll(self._ready, where, self.forwarder.process, timeout)
        return self

    @property
    def _target(self) -> str:
        return self.target_url

    def stop(self, timeout: float = 5.0) -> None:
        self.forwarder.stop(timeout)
