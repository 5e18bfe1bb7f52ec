"""``GET /healthz`` and ``GET /readyz`` (OPS-PROBE-*), answered before Django.

Liveness is the process alone: it answers as long as the event loop runs, whatever
the database or the service do, so a supervisor never restarts a gateway for a
neighbour's failure. Readiness checks what serving needs (readiness.py): the
database (users and sessions), the service (its ``GET /health``, which every
service of the contract answers without credentials, over a client of its own so a
busy pool never reads as "not ready"), and Redis when configured (reported, never
failing). Both routes sit outside the body limit, the sessions and CSRF: a probe
carries no cookie and must stay cheap.
"""

from __future__ import annotations

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpResponseBase, JsonResponse

from gateway.asgi.responses import send_response
from gateway.asgi.types import ASGIApp, Receive, Scope, Send
from gateway.lifecycle.readiness import Readiness
from gateway.problems import problem
from gateway.state.shared import shared_state
from gateway.upstream.client import service_url

HEALTHZ = "/healthz"
READYZ = "/readyz"
PATHS = frozenset({HEALTHZ, READYZ})
#: The longest one readiness check may take; the probe answers within about this.
CHECK_TIMEOUT = 2.0


class Probes:
    """ASGI middleware: the probe routes, and ``app`` for everything else."""

    def __init__(self, app: ASGIApp, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PATHS:
            await self.app(scope, receive, send)
            return
        await send_response(await self._answer(scope), send)

    async def _answer(self, scope: Scope) -> HttpResponseBase:
        if scope["method"] != "GET":
            return problem(405, "Probes answer GET only.", headers={"Allow": "GET"})
        if scope["path"] == HEALTHZ:
            return JsonResponse({"status": "ok"})
        report = await self.readiness.report()
        if report.ready:
            return JsonResponse({"status": "ready", "checks": report.checks})
        detail = "Not ready: " + ", ".join(report.failing) + "."
        return problem(503, detail, extensions={"checks": report.checks})


class ServiceProbe:
    """``GET /health`` at the service over a one-connection client of this loop."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def __call__(self) -> None:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=CHECK_TIMEOUT,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                trust_env=False,
            )
        response = await self._client.get(service_url("/health"))
        response.raise_for_status()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _ping_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # this worker thread's connection: back to the pool, or closed


async def _database() -> None:
    await sync_to_async(_ping_database, thread_sensitive=False)()


async def _redis() -> None:
    shared = shared_state()
    assert shared is not None
    await shared.link.client().ping()


def gateway_readiness(service: ServiceProbe) -> Readiness:
    """The gateway's checks: database, service, and Redis when REDIS_URL is set."""
    checks = {"database": _database, "service": service}
    if settings.REDIS_URL:
        checks["redis"] = _redis
    return Readiness(checks, degraded_only=frozenset({"redis"}), timeout=CHECK_TIMEOUT)
