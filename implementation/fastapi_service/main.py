"""The ASGI entry point: `uvicorn fastapi_service.main:app`.

Configuration comes from FASTAPI_SECRET, FASTAPI_SECRET_PREVIOUS, FASTAPI_AUTH_MODE, FASTAPI_DEBUG,
LLM_BASE_URL, LLM_API_KEY, LLM_MODEL and LLM_TIMEOUT (see `core.config`). Host, port
and workers are uvicorn's command-line flags; FASTAPI_HOST/PORT/WORKERS are not read.
With METRICS_PORT set, the Prometheus metrics are served there (on METRICS_HOST,
127.0.0.1 by default), never on the service's own port (`deploy/metrics.py`).

`app` is built on first access (PEP 562 module `__getattr__`), so tests and the
OpenAPI exporter can import `create_app` without a configured environment, while
uvicorn's `getattr(module, "app")` still builds it from the environment and exits
with one clear line when the configuration is invalid.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from deploy.metrics import Listener, serve
from fastapi_service.core.body_limit import BodyLimitMiddleware
from fastapi_service.core.config import ConfigError, Settings, metrics_listener
from fastapi_service.core.files import MAX_UPLOAD_BODY
from fastapi_service.core.llm import LLMClient, build_http_client
from fastapi_service.core.middleware import install_auth
from fastapi_service.core.problems import install_problem_handlers
from fastapi_service.core.readiness import Readiness
from fastapi_service.core.request_metrics import RequestMetricsMiddleware
from fastapi_service.routers import chat, health, quiz
from fastapi_service.schemas import DoneData, NotReady, Problem, TokenData, ValidationProblem

TITLE = "Lamla internal AI service"
VERSION = "1.0.0"
DESCRIPTION = (
    "Internal service behind the gateway. Every route except the probes (`GET /health`, "
    "`GET /healthz`, `GET /readyz`) requires the "
    "shared secret in `X-Internal-Secret`; errors are RFC 9457 `application/problem+json`.\n\n"
    "The service trusts exactly the request headers listed in `info.x-trusted-headers`, "
    "which only the gateway sets (GW-PROXY-3): `X-Internal-Secret` (in `hmac` mode "
    "`X-Internal-Timestamp` and `X-Internal-Signature` instead), `X-User-Id` (the session's "
    "user) and `X-Forwarded-For` (the browser's address, SEC-4). `X-Request-ID` is a "
    "correlation id, never trusted. A gateway passes on no client value of a header whose "
    "name starts with one of `info.x-gateway-only-prefixes`."
)
#: The request headers the service believes, and the name prefixes only a gateway may send
#: (GW-PROXY-3); the OpenAPI document carries both, and the contract suite reads them there.
TRUSTED_HEADERS = (
    "X-Internal-Secret",
    "X-Internal-Timestamp",
    "X-Internal-Signature",
    "X-User-Id",
    "X-Forwarded-For",
)
GATEWAY_ONLY_PREFIXES = ("X-Internal-", "X-User-", "X-Forwarded-")
MAX_JSON_BODY = 16 * 1024 * 1024  # a full-size chat history with escaped characters fits
BODY_LIMITS = {
    "/chatbot/": MAX_JSON_BODY,
    "/chatbot/stream/": MAX_JSON_BODY,
    "/chatbot/file/": MAX_UPLOAD_BODY,
    "/quiz/": 64 * 1024,
}
DEFAULT_BODY_LIMIT = 64 * 1024


def create_app(settings: Settings | None = None, *, metrics: Listener | None = None) -> FastAPI:
    """Build the service; without `settings` they, and `metrics`, are read from the environment.

    ``metrics``: where the lifespan serves the Prometheus metrics; None: nowhere.
    """
    if settings is None:
        settings, metrics = Settings.from_env(), metrics_listener()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled client per app and event loop, closed when the server stops.
        app.state.readiness.install_signal_hook()
        metrics_server = serve(metrics)  # None under gunicorn: its master serves them
        try:
            async with build_http_client(settings) as http:
                app.state.llm = LLMClient(http, settings)
                yield
        finally:
            await app.state.readiness.aclose()
            if metrics_server is not None:
                metrics_server.close()

    # debug stays False whatever FASTAPI_DEBUG says: Starlette's debug mode would put
    # tracebacks in 500 responses. FASTAPI_DEBUG only relaxes the placeholder check.
    app = FastAPI(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.readiness = Readiness(settings)
    # Added last = outermost: the secret is checked before any size or body handling.
    app.add_middleware(BodyLimitMiddleware, limits=BODY_LIMITS, default=DEFAULT_BODY_LIMIT)
    install_auth(
        app,
        settings,
        exempt=public_operations(health.router),
        body_limits=BODY_LIMITS,
        default_body_limit=DEFAULT_BODY_LIMIT,
    )
    # Outermost of the app's middleware: what the gate refuses is counted too (OPS-METRICS-5).
    # Its labels come from the document (late-bound: `app.openapi` is replaced below).
    app.add_middleware(RequestMetricsMiddleware, openapi=lambda: app.openapi())
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(chat.router)
    app.include_router(quiz.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def public_operations(router: APIRouter) -> frozenset[tuple[str, str]]:
    """(METHOD, path) of each route of ``router``: the ones the gate lets through unsigned."""
    return frozenset(
        (method, route.path)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas that error and stream responses refer to."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schema["info"]["x-trusted-headers"] = list(TRUSTED_HEADERS)
        schema["info"]["x-gateway-only-prefixes"] = list(GATEWAY_ONLY_PREFIXES)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Problem, ValidationProblem, NotReady, TokenData, DoneData):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, nested in definition.pop("$defs", {}).items():
                schemas.setdefault(name, nested)
            schemas[model.__name__] = definition
        app.openapi_schema = schema
    return app.openapi_schema


def _app_from_env() -> FastAPI:
    try:
        return create_app(Settings.from_env(), metrics=metrics_listener())
    except ConfigError as exc:
        raise SystemExit(f"fastapi_service: {exc}") from None


def __getattr__(name: str) -> Any:
    if name == "app":
        app = _app_from_env()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
