"""The systems compared in one run, and how a client reaches each of them.

Routes to the same fake service, each answering the same requests:

- ``direct``: straight to the fake service with the shared secret (the limit);
- ``gateway``: the implementation's gateway, one worker, logged in (session + CSRF);
- ``nginx``: nginx in front of the fake service (when installed);
- one per ``[baselines.NAME]`` of the plug file: other ways to run the gateway (the
  "before": plain Django async views, old sync views under a sync server...).

A route that cannot be offered carries the reason instead ("nginx: not installed").
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import nginx, wrk
from harness.client import Session
from harness.loadgen import build_request
from harness.plug import Baseline
from harness.processes import LOOPBACK, ManagedProcess, StartupError, free_port
from harness.sampling import ProcessTree
from harness.spec import route
from harness.system import Fake, Harness, Running, User

DIRECT, GATEWAY, NGINX = "direct", "gateway", "nginx"
#: The two routes every path is measured on (spec/gateway.openapi.yaml).
CHAT = route("chat")
STREAM = route("chat_stream")
#: The small request every path is compared on, and how many are in flight at once.
SMALL_CHAT = b'{"message":"hello"}'
SMALL_CONCURRENCY = 32

LABELS = {
    DIRECT: "direct to the service (the limit)",
    GATEWAY: "the gateway (1 worker)",
    NGINX: "nginx, `proxy_buffering off`, 1 worker",
}

#: The gateway's knobs for load: with HTTP/1.1 each live request holds a connection, so the
#: pool must exceed the largest burst (5,000) or the burst runs in waves; long waits.
PERF_GATEWAY_KNOBS = {
    "max_connections": "6000",
    "max_keepalive": "1000",
    "pool_timeout": "30",
    "read_timeout": "60",
    "connect_timeout": "5",
    # One user drives every request of the run: its limits must not be what is measured.
    "max_streams_per_user": "100000",
    "chat_rate": "100000000/m",
    "quiz_rate": "100000000/m",
}


@dataclass(frozen=True)
class Route:
    """Where a client sends chat and stream requests for one of the compared systems."""

    key: str
    label: str
    host: str
    port: int
    chat_path: str
    stream_path: str
    headers: tuple[tuple[str, str], ...] = ()

    def small_chats(
        self, load_client: str | None, *, duration: float, warmup: float
    ) -> wrk.Throughput:
        """Small JSON chats at concurrency :data:`SMALL_CONCURRENCY`, after a warm-up."""
        return wrk.measure(
            self.host,
            self.port,
            self.chat_path,
            SMALL_CHAT,
            self.headers,
            wrk=load_client,
            connections=SMALL_CONCURRENCY,
            duration=duration,
            warmup=warmup,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def post(self, path: str, payload: dict[str, Any]) -> bytes:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = (("Content-Type", "application/json"), *self.headers)
        host = f"{self.host}:{self.port}"
        return build_request("POST", path, host=host, headers=headers, body=body)

    def chat(self, message: str) -> bytes:
        """A small JSON chat request (the fake answers it at once, or as told)."""
        return self.post(self.chat_path, {"message": message})

    def stream(self, message: str) -> bytes:
        """A streamed chat request; ``message`` carries the fake's behaviour token."""
        return self.post(self.stream_path, {"message": message})


@dataclass
class Bench:
    """Starts and holds the compared systems for one run; stops what it started itself."""

    harness: Harness
    fake: Fake
    user: User
    nofile: int
    gateway: Running | None = None
    routes: dict[str, Route] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))
    baselines: dict[str, Baseline] = field(default_factory=dict)
    _started: dict[str, Running] = field(default_factory=dict)
    _nginx: ManagedProcess | None = None
    _nginx_dir: Path | None = None

    def start(self) -> None:
        secret = self.harness.secret
        self.routes[DIRECT] = Route(
            DIRECT,
            LABELS[DIRECT],
            LOOPBACK,
            _port(self.fake.url),
            CHAT.upstream,
            STREAM.upstream,
            (("X-Internal-Secret", secret),),
        )
        self.gateway = self.harness.start_gateway(self.fake.url, [self.user], **PERF_GATEWAY_KNOBS)
        self.routes[GATEWAY] = self._logged_in(GATEWAY, self.gateway, CHAT.path, STREAM.path)
        self._start_nginx()
        for baseline in self.harness.plug.baselines:
            self.baselines[baseline.name] = baseline
            self.labels[baseline.name] = f"{baseline.name}: {baseline.description}".rstrip(": ")

    def describe(self) -> dict[str, str]:
        """How the compared systems were set up, for the report."""
        setup = {
            "service": "fakes.service (Python, uvicorn, 1 process): the same upstream for every "
            "path, so `direct` is this fake's own limit",
            "gateway": f"plug `{self.harness.plug.name}`, knobs {PERF_GATEWAY_KNOBS}",
            "nginx": "1 worker, `proxy_buffering off`, upstream keepalive 1000, HTTP/1.1; "
            "adds the shared secret, no session or CSRF work",
        }
        for name, baseline in self.baselines.items():
            changed = _env_overrides(baseline, self.harness.plug.gateway.env)
            command = " ".join(baseline.component.command)
            setup[name] = command + (f" (env {changed})" if changed else "")
        return setup

    @property
    def keys(self) -> list[str]:
        """Every route of the run, in report order (baselines last)."""
        return [DIRECT, GATEWAY, NGINX, *self.baselines]

    def is_baseline(self, key: str) -> bool:
        return key in self.baselines

    def route(self, key: str) -> Route | None:
        """The route, starting a baseline (again) when needed; None if unavailable."""
        baseline = self.baselines.get(key)
        if baseline is not None and key not in self._started and key not in self.unavailable:
            try:
                self._start_baseline(baseline)
            except StartupError as exc:
                # A baseline is optional: report why it is missing, do not fail the run.
                self.unavailable[key] = f"did not start: {str(exc).splitlines()[-1][:200]}"
        return self.routes.get(key)

    def available(self) -> list[Route]:
        return [r for r in (self.route(k) for k in self.keys) if r is not None]

    def _logged_in(self, key: str, running: Running, chat: str, stream: str) -> Route:
        session = Session.of(running.url, self.user)
        label = self.labels[key]
        return Route(key, label, LOOPBACK, running.port, chat, stream, session.headers())

    # -- nginx -------------------------------------------------------------------------------
    def _start_nginx(self) -> None:
        binary = nginx.find_nginx()
        if binary is None:
            self.unavailable[NGINX] = "nginx: not installed"
            return
        self.versions["nginx"] = nginx.nginx_version(binary)
        port = free_port()
        self._nginx_dir = Path(tempfile.mkdtemp(prefix="perf-nginx-"))
        self._nginx_dir.chmod(0o755)  # workers may run as another user
        nginx.write_config(
            self._nginx_dir,
            port=port,
            upstream_port=_port(self.fake.url),
            secret=self.harness.secret,
            nofile=self.nofile,
        )
        log = self.harness.run_dir / "nginx.log"
        try:
            self._nginx = nginx.start_nginx(binary, self._nginx_dir, port=port, log=log)
        except StartupError as exc:
            self.unavailable[NGINX] = f"nginx: did not start ({str(exc).splitlines()[0]})"
            return
        self.routes[NGINX] = Route(NGINX, LABELS[NGINX], LOOPBACK, port, CHAT.path, STREAM.path)

    # -- baselines ---------------------------------------------------------------------------
    def _start_baseline(self, baseline: Baseline) -> None:
        running = self.harness.start_gateway(
            self.fake.url, [self.user], component=baseline.component, **PERF_GATEWAY_KNOBS
        )
        self._started[baseline.name] = running
        self.routes[baseline.name] = self._logged_in(
            baseline.name, running, baseline.chat_path, baseline.stream_path
        )

    def settle(self, timeout: float = 60.0) -> float | None:
        """Wait until the gateway is idle and the fake answers nothing (see ProcessTree.settle)."""
        if self.gateway is None:
            return 0.0
        control = self.fake.control

        def busy() -> bool:
            return any(not r["completed"] and not r["aborted"] for r in control.requests())

        return ProcessTree(self.gateway.process.pid).settle(busy=busy, timeout=timeout)

    def pid(self, key: str) -> int | None:
        """The process id of a started route's gateway (None: not one of ours, or not started)."""
        if key == GATEWAY and self.gateway is not None:
            return self.gateway.process.pid
        running = self._started.get(key)
        return None if running is None else running.process.pid

    def stop_baseline(self, key: str) -> None:
        """Stop a baseline now (after a burst a slow one would work through its backlog)."""
        running = self._started.pop(key, None)
        if running is not None:
            running.process.stop(timeout=2.0)
            self.routes.pop(key, None)

    def stop(self) -> None:
        for key in list(self._started):
            self.stop_baseline(key)
        if self._nginx is not None:
            self._nginx.stop(timeout=5.0)
        if self._nginx_dir is not None:
            shutil.rmtree(self._nginx_dir, ignore_errors=True)  # it holds the secret


def _env_overrides(baseline: Baseline, gateway_env: Mapping[str, str]) -> dict[str, str]:
    """What a baseline's environment changes relative to the gateway's."""
    env = baseline.component.env
    return {k: v for k, v in env.items() if gateway_env.get(k) != v}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
