"""gunicorn settings shared by the gateway and the service (README.md, "Deploying").

    gunicorn lamla.asgi:application -c deploy/gunicorn.conf.py --bind 0.0.0.0:8000
    gunicorn fastapi_service.main:app -c deploy/gunicorn.conf.py --bind 10.0.0.5:8001

Each value may be overridden on the command line or in GUNICORN_CMD_ARGS.

With ``METRICS_PORT`` set, the master serves every worker's metrics there (deploy/metrics.py).
"""

import os
import sys
import tempfile
from pathlib import Path

if str(_ROOT := Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(_ROOT))  # `deploy` is importable however gunicorn was started

from deploy import metrics

worker_class = "deploy.worker.Worker"
# One worker per core: each runs an event loop that carries ~1,000 streams.
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))
# Idle keep-alive of client connections (nginx's upstream keepalive, or the gateway's
# pool): longer than any client keeps an idle connection, so the client closes first
# and never reuses a connection the server is closing (RFC 9112 9.6). The gateway's
# SERVICE_KEEPALIVE_EXPIRY and nginx's keepalive_timeout stay below it.
keepalive = 75
# A TERM gives a worker this long, then it is killed. The gateway's own drain ends its
# open streams cleanly before (GATEWAY_DRAIN_TIMEOUT, 20 s by default: keep it below).
graceful_timeout = 30
# A worker that stops answering gunicorn's heartbeat this long is killed and replaced.
timeout = 30

# Metrics: each worker writes its values to files in PROMETHEUS_MULTIPROC_DIR; the master
# serves their sum on METRICS_PORT. The directory is set here, before any worker imports
# prometheus_client (workers inherit the environment), and emptied at every start.
_metrics = metrics.Listener.from_environ()
_own_metrics_dir = False
if _metrics is not None and not os.environ.get(metrics.MULTIPROC_DIR):
    os.environ[metrics.MULTIPROC_DIR] = tempfile.mkdtemp(prefix="prometheus-multiproc-")
    _own_metrics_dir = True


def on_starting(server):  # once: a HUP reloads this file, but does not start again
    server.owns_metrics_dir = _own_metrics_dir
    if _metrics is not None:
        metrics.fresh_multiprocess_dir(os.environ[metrics.MULTIPROC_DIR])


def when_ready(server):
    if _metrics is not None:
        server.metrics_server = metrics.serve_multiprocess(_metrics)


def post_fork(server, worker):
    if (running := getattr(server, "metrics_server", None)) is not None:
        running.close_inherited()  # the master's listener is not the worker's to hold


def child_exit(server, worker):
    if _metrics is not None:
        metrics.worker_exited(worker.pid)


def on_exit(server):
    if (running := getattr(server, "metrics_server", None)) is not None:
        running.close()
    if getattr(server, "owns_metrics_dir", False):
        metrics.remove_multiprocess_dir(os.environ[metrics.MULTIPROC_DIR])
