"""nginx as the load balancer of a tier, and as a forwarder from the hosts to loopback.

One nginx per :class:`Balancer`, rendered from :data:`CONFIG` (the options a
deployment in front of SSE needs: HTTP/1.1 upstream keep-alive, no buffering either
way, long reads, a dead host routed around within a second). Sites are added and
removed at run time; :meth:`Balancer.reload` proves the new configuration serves by
polling a generation counter that every configuration answers on its control port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness.processes import LOOPBACK, ManagedProcess, StartupError, free_port, tail

NGINX = os.environ.get("CLUSTER_NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

CONFIG = """\
# Rendered by cluster_tests/balancer.py (generation {generation}); do not edit.
{user}worker_processes 1;
error_log {log_dir}/error.log notice;
worker_rlimit_nofile 65536;

events {{
    worker_connections 16384;
}}

http {{
    log_format pxc '$time_iso8601 site=$pxc_site client=$remote_addr '
                   'upstream="$upstream_addr" status=$status '
                   'upstream_status="$upstream_status" time=$request_time "$request"';
    access_log {log_dir}/access.log pxc;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    # The servers behind judge body sizes (a 413 is theirs to give).
    client_max_body_size 0;
    keepalive_timeout 75s;
    server_tokens off;

    # Control: which configuration is serving (reload() polls it).
    server {{
        listen {control};
        set $pxc_site control;
        access_log off;
        location = /generation {{
            return 200 "{generation}\\n";
        }}
    }}
{sites}}}
"""

#: What a client gets when no server behind a site answered (RFC 9457).
PROBLEM = json.dumps(
    {
        "type": "about:blank",
        "title": "Bad Gateway",
        "status": 502,
        "detail": "No server behind the balancer answered: try again.",
    }
)

SITE = """
    upstream pxc_{name} {{
{servers}        keepalive 64;
        # Below the servers' own idle keep-alive (gunicorn.conf.py: 75 s), so
        # nginx closes an idle connection first and never reuses one being closed.
        keepalive_timeout 60s;
    }}

    server {{
{listens}        set $pxc_site {name};
        location / {{
            proxy_pass http://pxc_{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_request_buffering off;
            # nginx obeys X-Accel-Buffering and by default drops it: pass it on, so a
            # proxy in front of this one (and the contract's GW-STREAM-2) still sees it.
            proxy_pass_header X-Accel-Buffering;
            proxy_read_timeout {read_timeout}s;
            proxy_send_timeout {read_timeout}s;
            proxy_connect_timeout {connect_timeout}s;
            proxy_next_upstream error timeout;
            # nginx's own failures (no upstream answered) as problem+json, like the
            # servers' errors (PROB-1); the servers' own answers pass unchanged.
            error_page 502 503 504 = @unavailable;
        }}
        location @unavailable {{
            default_type application/problem+json;
            return 502 '{problem}';
        }}
    }}
"""


@dataclass(frozen=True)
class Site:
    """A listening site balanced over ``upstreams`` (one upstream: a plain forward)."""

    name: str
    listen: tuple[str, ...]
    upstreams: tuple[str, ...]
    read_timeout: int = 300
    connect_timeout: int = 1
    fail_timeout: int = 2

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"site name {self.name!r}: lower-case letters, digits, _")
        if not self.listen or not self.upstreams:
            raise ValueError(f"site {self.name!r} needs a listen address and an upstream")

    def render(self) -> str:
        servers = "".join(
            f"        server {u} max_fails=1 fail_timeout={self.fail_timeout}s;\n"
            for u in self.upstreams
        )
        listens = "".join(f"        listen {addr};\n" for addr in self.listen)
        return SITE.format(
            name=self.name,
            servers=servers,
            listens=listens,
            read_timeout=self.read_timeout,
            connect_timeout=self.connect_timeout,
            problem=PROBLEM,
        )


def forward(name: str, listen: str, target: str) -> Site:
    """A site that lets the hosts reach ``target`` (e.g. a fake on 127.0.0.1) at ``listen``."""
    return Site(name, (listen,), (target,))


class Balancer:
    """One nginx process and the sites it serves; its files live in ``prefix``."""

    def __init__(self, prefix: Path, log_dir: Path, *, name: str = "nginx") -> None:
        self.prefix = prefix
        self.log_dir = log_dir
        self.name = name
        self.conf = prefix / "nginx.conf"
        self.control = f"{LOOPBACK}:{free_port()}"
        self.sites: dict[str, Site] = {}
        self.generation = 0
        self._process: ManagedProcess | None = None

    @property
    def access_log(self) -> Path:
        return self.log_dir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.log_dir / "error.log"

    def add(self, site: Site) -> None:
        self.sites[site.name] = site

    def remove(self, name: str) -> None:
        self.sites.pop(name, None)

    def _argv(self, *extra: str) -> list[str]:
        pid = self.prefix / "nginx.pid"
        return [
            NGINX,
            "-p", f"{self.prefix}/",
            "-c", str(self.conf),
            "-g", f"daemon off; pid {pid};",
            *extra,
        ]  # fmt: skip

    def _write(self) -> None:
        self.generation += 1
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "temp" / sub).mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        text = CONFIG.format(
            generation=self.generation,
            user="user root;\n" if os.geteuid() == 0 else "",
            log_dir=self.log_dir,
            prefix=self.prefix,
            control=self.control,
            sites="".join(site.render() for site in self.sites.values()),
        )
        self.conf.write_text(text, encoding="utf-8")
        test = subprocess.run(
            self._argv("-t", "-q"), capture_output=True, text=True, timeout=30, check=False
        )
        if test.returncode != 0:
            raise StartupError(f"{self.name}: bad configuration {self.conf}:\n{test.stderr}")

    def start(self, timeout: float = 15.0) -> Balancer:
        self._write()
        process = ManagedProcess(
            self.name,
            self._argv(),
            cwd=self.prefix,
            env=dict(os.environ),
            log=self.log_dir / "nginx.out",
        )
        self._process = process.start()
        self._wait_generation(timeout)
        return self

    def reload(self, timeout: float = 15.0) -> None:
        """Apply the current sites; return once the new configuration answers."""
        if self._process is None:
            self.start(timeout)
            return
        self._write()
        result = subprocess.run(
            self._argv("-s", "reload"), capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise StartupError(f"{self.name}: reload failed:\n{result.stderr}")
        self._wait_generation(timeout)

    def _wait_generation(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = str(self.generation)
        seen = "no answer yet"
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    break
                try:
                    seen = client.get(f"http://{self.control}/generation").text.strip()
                    if seen == want:
                        return
                except httpx.HTTPError as exc:
                    seen = type(exc).__name__
                time.sleep(0.05)  # poll interval
        raise StartupError(
            f"{self.name}: generation {want} not serving after {timeout}s (saw {seen}):\n"
            f"{tail(self.error_log)}"
        )

    @property
    def process(self) -> ManagedProcess | None:
        return self._process

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.stop(timeout=timeout)
            self._process = None


def upstream_addresses(access_log: Path, site: str) -> list[str]:
    """The upstream each request of ``site`` went to, in order (from the access log)."""
    found: list[str] = []
    try:
        lines = access_log.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        if f" site={site} " in line:
            match = re.search(r' upstream="([^"]*)"', line)
            if match:
                found.append(match.group(1))
    return found


def listens(addresses: Sequence[str], port: int) -> tuple[str, ...]:
    return tuple(f"{address}:{port}" for address in addresses)
