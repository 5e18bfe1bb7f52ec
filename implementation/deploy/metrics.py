"""Serving Prometheus metrics on a port of their own (OPS-METRICS-1), for both components.

The metrics are for the operator, never for the browser: they are served by
prometheus-client's own HTTP server on ``METRICS_HOST:METRICS_PORT`` (127.0.0.1 by
default), a thread beside the event loop, and never on the application's port.

One process (``uvicorn ...``, the default): the application starts the listener in
its lifespan (:func:`serve`) over the process's own registry.

Several (gunicorn, ``deploy/gunicorn.conf.py``): each worker writes its values to
files in ``PROMETHEUS_MULTIPROC_DIR`` and the master serves them all, summed
(:func:`serve_multiprocess`); the workers serve nothing (:func:`serve` sees the
directory and returns None). The directory must be set before any worker imports
prometheus_client and wiped at every start (client_python's multiprocess docs).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_HOST = "127.0.0.1"

#: The ``method`` label's values (OPS-METRICS-3): these, and ``other`` for anything else.
LABELLED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
#: The ``status`` of a request whose client left before any answer began (nginx's code).
CLIENT_CLOSED_REQUEST = 499


class _Server(Protocol):
    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


@dataclass(frozen=True)
class Listener:
    """Where the metrics of this deployment are served; from ``METRICS_PORT``/``METRICS_HOST``."""

    host: str
    port: int

    @classmethod
    def from_environ(cls) -> Listener | None:
        """None when ``METRICS_PORT`` is unset or empty: no metrics are served.

        Raises ValueError, with a message naming the variable, for a port that is not one.
        """
        port = os.environ.get("METRICS_PORT", "").strip()
        if not port:
            return None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"METRICS_PORT={port!r} is not a TCP port (1-65535): set a port, "
                "or leave it empty to serve no metrics"
            )
        host = os.environ.get("METRICS_HOST", "").strip() or DEFAULT_HOST
        return cls(host, int(port))


class MetricsServer:
    """A running listener; :meth:`close` stops its thread and frees its port."""

    def __init__(self, server: _Server) -> None:
        self._server = server

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def close_inherited(self) -> None:
        """In a forked child: release the socket only (the serving thread was not forked)."""
        self._server.server_close()


def multiprocess() -> bool:
    """Whether this process is one of several whose metrics a parent serves."""
    return bool(os.environ.get(MULTIPROC_DIR))


def serve(listener: Listener | None) -> MetricsServer | None:
    """This process's metrics on ``listener``; None when it has none or a parent serves.

    A port already taken is logged, not raised: under ``uvicorn --workers N`` every
    worker would try the same port, and a worker that cannot serve its metrics must
    still serve its users (gunicorn with deploy/gunicorn.conf.py serves them all).
    """
    if listener is None or multiprocess():
        return None
    from prometheus_client import REGISTRY, start_http_server

    try:
        server, _thread = start_http_server(listener.port, listener.host, registry=REGISTRY)
    except OSError as exc:
        logger.error(
            "metrics not served on %s:%s (%s): with several worker processes, run them "
            "under gunicorn -c deploy/gunicorn.conf.py, whose master serves them all",
            listener.host,
            listener.port,
            exc.strerror or exc,
        )
        return None
    return MetricsServer(server)


def serve_multiprocess(listener: Listener) -> MetricsServer:
    """Every worker's metrics, from the directory they write to (gunicorn's master)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    server, _thread = start_http_server(listener.port, listener.host, registry=registry)
    return MetricsServer(server)


def fresh_multiprocess_dir(path: str | Path) -> None:
    """Empty ``path`` (values of an earlier run must not be summed in), creating it."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def remove_multiprocess_dir(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: a total never goes down)."""
    from prometheus_client import multiprocess as mp

    mp.mark_process_dead(pid)
