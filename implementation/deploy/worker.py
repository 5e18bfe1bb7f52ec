"""The gunicorn worker of both tiers: ``uvicorn_worker.UvicornWorker`` with what it leaves out.

``uvicorn-worker`` maps gunicorn's ``keepalive`` and ``max_requests`` onto uvicorn but
not ``graceful_timeout`` (Kludex/uvicorn#2094): without it a TERM would cut open
streams at once instead of letting them finish. uvicorn's own X-Forwarded-* handling
stays off: the gateway believes only GATEWAY_TRUSTED_PROXIES (gateway/asgi/edge.py,
SEC-4), and the service is never behind a proxy that speaks for clients. A stopping
worker closes its keep-alive connections only after a grace (deploy/protocol.py).
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn_worker import UvicornWorker

from deploy import protocol

logger = logging.getLogger(__name__)


def _http_protocol() -> dict[str, Any]:
    """uvicorn's protocol with a grace for keep-alive connections (deploy/protocol.py), if
    the installed uvicorn has the internals it relies on; else uvicorn's own."""
    if missing := list(protocol.problems()):
        logger.warning("uvicorn's own HTTP protocol: %s", "; ".join(missing))
        return {}
    return {"http": protocol.DrainingProtocol}


class Worker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "lifespan": "on",  # start-up checks must pass before a worker serves
        "proxy_headers": False,
        "access_log": False,
        # A rolling restart behind a keep-alive balancer loses no request (OPS-DRAIN-4).
        **_http_protocol(),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = self.cfg.graceful_timeout
