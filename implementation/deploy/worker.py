"""The gunicorn worker of both tiers: ``uvicorn_worker.UvicornWorker`` with what it leaves out.

``uvicorn-worker`` maps gunicorn's ``keepalive`` and ``max_requests`` onto uvicorn but
not ``graceful_timeout`` (Kludex/uvicorn#2094): without it a TERM would cut open
streams at once instead of letting them finish. uvicorn's own X-Forwarded-* handling
stays off: the gateway believes only GATEWAY_TRUSTED_PROXIES (gateway/asgi/edge.py,
SEC-4), and the service is never behind a proxy that speaks for clients.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "lifespan": "on",  # start-up checks must pass before a worker serves
        "proxy_headers": False,
        "access_log": False,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = self.cfg.graceful_timeout
