"""nginx as the peer to beat: a reverse proxy in front of the same (fake) service.

nginx comes from the system packages. It gets one worker (like the one gateway
worker), ``proxy_buffering off`` (streams go through as they come) and upstream
keep-alive, and maps the gateway's public paths onto the service's, adding the
shared secret as the gateway does. It does no session or CSRF work, so it is the
cost of proxying alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from harness.processes import LOOPBACK, ManagedProcess

READY_PATH = "/_perf/ready"

CONFIG = """\
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections {connections};
    multi_accept on;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    keepalive_requests 1000000;

    upstream service {{
        server {host}:{upstream_port};
        keepalive {keepalive};
        keepalive_requests 1000000;
        keepalive_timeout {keepalive_timeout}s;
    }}

    server {{
        listen {host}:{port} backlog=4096;

        location = {ready} {{
            return 200 "ok\\n";
        }}

        location /api/chat/ {{
            proxy_pass http://service/chatbot/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Cookie "";
            proxy_set_header X-CSRFToken "";
            proxy_set_header X-Internal-Secret "{secret}";
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    """The nginx binary, also where Debian puts it outside a normal user's PATH."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def nginx_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    found = re.search(r"nginx/(\S+)", result.stderr + result.stdout)
    return found.group(1) if found else "unknown"


def write_config(
    directory: Path,
    *,
    port: int,
    upstream_port: int,
    secret: str,
    nofile: int,
    keepalive: int = 1000,
    keepalive_timeout: int = 4,
) -> Path:
    """Write ``nginx.conf`` (and its temp dirs) into ``directory``; return the file.

    ``keepalive`` idle upstream connections are kept, each at most ``keepalive_timeout``
    seconds (below the service's own keep-alive).
    """
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    config = CONFIG.format(
        dir=directory,
        host=LOOPBACK,
        port=port,
        upstream_port=upstream_port,
        secret=secret,
        nofile=nofile,
        connections=max(1024, nofile - 256),  # clients and upstreams both count
        keepalive=keepalive,
        keepalive_timeout=keepalive_timeout,
        ready=READY_PATH,
    )
    path = directory / "nginx.conf"
    path.write_text(config, encoding="utf-8")
    return path


def start_nginx(binary: str, directory: Path, *, port: int, log: Path) -> ManagedProcess:
    """Start nginx in the foreground on ``port`` and wait until it answers."""
    argv = [binary, "-p", str(directory), "-c", "nginx.conf", "-g", "daemon off;"]
    if _version_tuple(nginx_version(binary)) >= (1, 19, 5):
        argv[1:1] = ["-e", str(directory / "error.log")]  # not the system's log path
    process = ManagedProcess("nginx", argv, cwd=directory, env=dict(os.environ), log=log)
    process.start()
    process.wait_ready(f"http://{LOOPBACK}:{port}{READY_PATH}", timeout=15.0)
    return process


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])
