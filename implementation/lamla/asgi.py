"""ASGI entry point: ``uvicorn lamla.asgi:application --lifespan on``.

From the outside in (each layer in gateway/asgi/, gateway/lifecycle/ or
gateway/observability/): the lifespan (start-up checks, the drain's signal hook, the
metrics listener and pool sampler, closing the pooled client), the edge (trusted
X-Forwarded-*, security headers), the probes (/healthz, /readyz), the metrics and the
request log, the body limit per route, the fast path for the proxied routes
(GATEWAY_FAST_PATH), and Django for everything else.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lamla.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402

from deploy import metrics  # noqa: E402
from gateway.asgi.body_limit import BodyLimit  # noqa: E402
from gateway.asgi.edge import edge  # noqa: E402
from gateway.asgi.fastpath import FastPath  # noqa: E402
from gateway.asgi.gc_tuning import tune_gc  # noqa: E402
from gateway.asgi.lifespan import LifespanApp  # noqa: E402
from gateway.asgi.types import ASGIApp  # noqa: E402
from gateway.checks import raise_for_errors  # noqa: E402
from gateway.lifecycle import draining  # noqa: E402
from gateway.lifecycle.probes import Probes, ServiceProbe, gateway_readiness  # noqa: E402
from gateway.observability.metrics import Metrics, PoolSampler  # noqa: E402
from gateway.observability.observe import Observe, RequestLog, Sink  # noqa: E402
from gateway.routes import served  # noqa: E402
from gateway.state.shared import shared_state  # noqa: E402
from gateway.upstream.client import aclose_clients, pool_stats  # noqa: E402  (app registry)

_service_probe = ServiceProbe()
_pool_sampler = PoolSampler(pool_stats)
_metrics_server: metrics.MetricsServer | None = None
_request_log = RequestLog()


async def _startup() -> None:
    global _metrics_server
    raise_for_errors()
    draining.install(settings.GATEWAY_DRAIN_TIMEOUT)
    if settings.GATEWAY_GC_TUNING:
        tune_gc()
    if settings.METRICS is not None:
        _pool_sampler.start()
        _metrics_server = metrics.serve(settings.METRICS)


async def _shutdown() -> None:
    global _metrics_server
    _request_log.flush()  # the lines of the last requests
    if settings.METRICS is not None:
        await _pool_sampler.stop()
    if _metrics_server is not None:
        _metrics_server.close()
        _metrics_server = None
    await _service_probe.aclose()
    await aclose_clients()
    shared = shared_state()
    if shared is not None:
        await shared.aclose()  # gives back the leases of streams still open


def _observed(app: ASGIApp) -> Observe:
    """The metrics (METRICS_PORT) and one log line per request (GATEWAY_REQUEST_LOG)."""
    sinks: list[Sink] = []
    if settings.METRICS is not None:
        sinks.append(Metrics())
    if settings.GATEWAY_REQUEST_LOG:
        sinks.append(_request_log)
    return Observe(app, routes=[route.path for route in served()], sinks=sinks)


def _body_limits(app: ASGIApp) -> BodyLimit:
    """Each proxied route's own limit (gateway/routes.py); MAX_JSON_BODY everywhere else."""
    limits = {route.path: route.body_limit() for route in served()}
    return BodyLimit(app, default=settings.MAX_JSON_BODY, limits=limits)


application = LifespanApp(
    edge(
        Probes(
            _observed(
                _body_limits(
                    FastPath(django_application)
                    if settings.GATEWAY_FAST_PATH
                    else django_application
                )
            ),
            gateway_readiness(_service_probe),
        ),
        settings.GATEWAY_TRUSTED_PROXIES,
    ),
    on_startup=_startup,
    on_shutdown=_shutdown,
)
