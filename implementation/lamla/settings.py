"""Django settings of the gateway: every value comes from the environment.

See implementation.toml for the variables the contract harness sets. The
gateway owns users, sessions and CSRF; everything AI-related is proxied to the
internal FastAPI service over one pooled httpx.AsyncClient (gateway/).
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured

from deploy.metrics import Listener
from lamla.env import env_bool, env_choice, env_float, env_int, env_list, env_name, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)

# Only a debug run may fall back to a well-known key: a guessable key lets
# anyone forge session cookies and CSRF tokens.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (or turn DJANGO_DEBUG on)")
    SECRET_KEY = "django-insecure-dev-only-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "corsheaders",
    "apps.core",
    "apps.accounts",
    "apps.chatbot",
    "apps.quiz",
]

# Every entry is async-capable, so an async view runs without an extra thread
# per middleware ("Asynchronous handler adapted" never appears).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "gateway.request_id.RequestIdMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "lamla.urls"
ASGI_APPLICATION = "lamla.asgi.application"
WSGI_APPLICATION = "lamla.wsgi.application"

# A JSON API: no templates, and a POST to a path without its slash is a 404
# problem, never a redirect that drops the body.
TEMPLATES: list[dict[str, object]] = []
APPEND_SLASH = False

# The embedded default is SQLite in a file; DATABASE_URL (PostgreSQL, say
# postgres://user:pass@db:5432/lamla) shares users and sessions between workers
# and hosts. Async views use the ORM from a thread per request: persistent
# connections would leak one per thread (Django docs, topics/async), so
# CONN_MAX_AGE stays 0 and PostgreSQL connections come from psycopg's pool
# (one pool per worker: hosts x workers x DATABASE_POOL_MAX_SIZE in all).
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN_SIZE", 2, minimum=0),
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20, minimum=1),
            # Seconds a request waits for a pooled connection before it fails.
            "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("DJANGO_DB_PATH", str(BASE_DIR / "db.sqlite3")),
            "CONN_MAX_AGE": 0,
            "OPTIONS": {
                # Wait for a writer instead of failing with "database is locked"
                # when many logins land at once.
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Sessions and CSRF. The CSRF cookie stays readable by JavaScript so a SPA can
# echo it in X-CSRFToken; the session cookie never is.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_HTTPONLY = False
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", False)
CSRF_FAILURE_VIEW = "apps.core.views.csrf_failure"

# CORS: the browser app's origins, with credentials; CSRF trusts the same list.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", "http://localhost:3000")
CSRF_TRUSTED_ORIGINS = list(CORS_ALLOWED_ORIGINS)
CORS_ALLOW_CREDENTIALS = True
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = (*default_headers, "x-request-id")
CORS_EXPOSE_HEADERS = ["x-request-id"]

# Security headers.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Request bodies. JSON bodies are read in memory (Django refuses bigger ones
# with RequestDataTooBig, mapped to 413); uploads are forwarded raw and
# checked against MAX_UPLOAD_SIZE plus room for the multipart framing.
MAX_JSON_BODY = env_int("MAX_JSON_BODY", 1024 * 1024, minimum=1)
MAX_UPLOAD_SIZE = env_int("MAX_UPLOAD_SIZE", 10 * 1024 * 1024, minimum=1)
MULTIPART_OVERHEAD = 64 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_JSON_BODY

# The internal service.


def _service(name: str) -> str:
    """SERVICE_<name>, or the seed's FASTAPI_<name> when only that is set (SERVICE_* wins)."""
    return env_name(f"SERVICE_{name}", f"FASTAPI_{name}")


SERVICE_BASE_URL = env_str(_service("BASE_URL"), "http://127.0.0.1:8001")
SERVICE_SECRET_PLACEHOLDER = "change-me-in-production-secret-key"  # noqa: S105
SERVICE_SECRET = env_str(_service("SECRET"), SERVICE_SECRET_PLACEHOLDER)
SERVICE_CONNECT_TIMEOUT = env_float(_service("CONNECT_TIMEOUT"), 5.0)
SERVICE_READ_TIMEOUT = env_float(_service("READ_TIMEOUT"), 60.0)
SERVICE_WRITE_TIMEOUT = env_float(_service("WRITE_TIMEOUT"), 5.0)
SERVICE_POOL_TIMEOUT = env_float(_service("POOL_TIMEOUT"), 5.0)
# With HTTP/1.1 every live stream holds one pooled connection, so this is the
# most streams one worker carries at once (the 1,001st waits SERVICE_POOL_TIMEOUT,
# then gets 503). 1,000 is the per-worker load the gateway is built for; each
# connection also costs a file descriptor: raise `ulimit -n` above 2x this.
SERVICE_MAX_CONNECTIONS = env_int(_service("MAX_CONNECTIONS"), 1000, minimum=1)
# Idle connections kept for the next burst: all of them, so a burst after a quiet
# moment reuses what the last one opened instead of opening them anew (CLUSTER-8:
# 0 new connections for 1,000 streams after a quiet second). Each idle one holds a
# file descriptor here and at the service until SERVICE_KEEPALIVE_EXPIRY.
SERVICE_MAX_KEEPALIVE = env_int(_service("MAX_KEEPALIVE"), SERVICE_MAX_CONNECTIONS)
# The service's idle keep-alive timeout: uvicorn's default --timeout-keep-alive is
# 5 s, deploy/gunicorn.conf.py's keepalive 75 s. The pool closes idle connections
# before it (SERVICE_KEEPALIVE_EXPIRY, by default 80 % of it): otherwise the client
# reuses a connection the service is closing and the request fails with "Server
# disconnected without sending a response" (httpx #2487). The system check
# lamla.W001 warns when the expiry is not below the timeout.
SERVICE_KEEPALIVE_TIMEOUT = env_float(_service("KEEPALIVE_TIMEOUT"), 5.0, minimum=1.0)
SERVICE_KEEPALIVE_EXPIRY = env_float(_service("KEEPALIVE_EXPIRY"), 0.8 * SERVICE_KEEPALIVE_TIMEOUT)
# Off by default: http2=True on an http:// URL silently stays HTTP/1.1, and h2c
# with httpcore 1.0.9 leaks streams on early close (httpcore #943).
SERVICE_HTTP2 = env_bool(_service("HTTP2"), False)
# What carries the bytes under the httpx client: "aiohttp" (gateway/upstream/transport.py;
# its cost does not grow with the pool) or "httpcore" (httpx's own transport,
# needed for SERVICE_HTTP2). README, "The gateway fast path", has the numbers.
SERVICE_TRANSPORT = env_choice(_service("TRANSPORT"), "aiohttp", ("aiohttp", "httpcore"))
# The most a non-streamed service answer may hold before it counts as a failure.
SERVICE_MAX_RESPONSE_BODY = env_int(_service("MAX_RESPONSE_BODY"), 8 * 1024 * 1024, minimum=1)

# The ASGI fast path (gateway/asgi/fastpath.py) serves the happy path of the JSON
# proxy routes without Django's per-request thread hops and hands everything
# else to Django. Off, every request goes through Django (the baseline).
GATEWAY_FAST_PATH = env_bool("GATEWAY_FAST_PATH", True)
# The seed's old sync views at /api/legacy/ (apps/chatbot/views.py): off unless
# asked for; on, they keep the async routes' limits and header rules.
GATEWAY_LEGACY_VIEWS = env_bool("GATEWAY_LEGACY_VIEWS", False)
# Serve every proxied JSON and stream route (/api/chat/, /api/quiz/generate/, ...)
# with that same sync view instead of its async one (lamla/urls.py); uploads keep
# their async view. Off by default: the seed's sync deployment (lamla/wsgi.py under
# gunicorn), judged by the suites beside the async gateway (legacy_views.toml).
GATEWAY_SYNC_VIEWS = env_bool("GATEWAY_SYNC_VIEWS", False)
# How long the fast path trusts a verified session (seconds): logout in this
# process revokes at once, elsewhere (another worker) within this delay.
GATEWAY_SESSION_CACHE_TTL = env_float("GATEWAY_SESSION_CACHE_TTL", 5.0)
GATEWAY_SESSION_CACHE_SIZE = env_int("GATEWAY_SESSION_CACHE_SIZE", 10_000)
# After SIGTERM, how long open streams may still run before each ends with one error
# event (503, "restarting") and the process exits (gateway/lifecycle/draining.py).
# Keep it below the supervisor's own limit (gunicorn graceful_timeout, Kubernetes
# terminationGracePeriodSeconds), which kills the process when it runs out.
GATEWAY_DRAIN_TIMEOUT = env_float("GATEWAY_DRAIN_TIMEOUT", 20.0)
# Freeze the objects built at startup out of the garbage collector's scans and
# collect young garbage in larger batches (gateway/asgi/gc_tuning.py).
GATEWAY_GC_TUNING = env_bool("GATEWAY_GC_TUNING", True)

# Limits per user (LIMIT-3, LIMIT-4). Rates are "N/s", "N/m", "N/h" or "N/d".
# With REDIS_URL they hold across every worker and host (gateway/state/);
# without it, and while Redis is away, each worker counts on its own (CLUSTER-7).
GATEWAY_MAX_STREAMS_PER_USER = env_int("GATEWAY_MAX_STREAMS_PER_USER", 4, minimum=1)
GATEWAY_RATE_LIMIT_CHAT = env_str("GATEWAY_RATE_LIMIT_CHAT", "60/m")
GATEWAY_RATE_LIMIT_QUIZ = env_str("GATEWAY_RATE_LIMIT_QUIZ", "10/m")

# Shared state (README, "Deploying"): rate counters, stream-slot leases and
# session revocations, e.g. redis://redis:6379/0. Empty: per-worker state.
REDIS_URL = env_str("REDIS_URL", "")
# Every key starts with this: several deployments (or test runs) share one Redis.
GATEWAY_REDIS_PREFIX = env_str("GATEWAY_REDIS_PREFIX", "lamla:")
# The longest one Redis call may take before the worker falls back (seconds).
GATEWAY_REDIS_TIMEOUT = env_float("GATEWAY_REDIS_TIMEOUT", 1.0, minimum=0.01)
# Connections to Redis per worker: a burst's admissions wait for one of them (at most
# GATEWAY_REDIS_TIMEOUT) rather than opening thousands.
GATEWAY_REDIS_MAX_CONNECTIONS = env_int("GATEWAY_REDIS_MAX_CONNECTIONS", 50, minimum=1)
# A stream's slot is a lease its worker renews every third of this; a worker that
# dies (even by SIGKILL) gives its slots back at most this long after (seconds).
GATEWAY_STREAM_LEASE = env_float("GATEWAY_STREAM_LEASE", 15.0, minimum=1.0)
if GATEWAY_STREAM_LEASE > 30.0:
    raise ImproperlyConfigured(
        f"GATEWAY_STREAM_LEASE must be at most 30 s, got {GATEWAY_STREAM_LEASE}: "
        "a dead worker's slots stay taken that long"
    )
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "lamla-gateway",
    }
}

# Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (SEC-4):
# addresses or CIDR networks, comma-separated. Empty: trust no one.
GATEWAY_TRUSTED_PROXIES = env_list("GATEWAY_TRUSTED_PROXIES", "")

# How the gateway proves itself to the service: "secret" sends X-Internal-Secret
# (the default); "hmac" signs each request with it instead (SEC-7), and the
# secret never travels. The service must be set to the same mode.
SERVICE_AUTH_MODE = env_choice(_service("AUTH_MODE"), "secret", ("secret", "hmac"))

# Prometheus metrics (OPS-METRICS; README, "Operating"): with METRICS_PORT set, the
# gateway counts every request and serves its metrics on METRICS_HOST:METRICS_PORT
# (127.0.0.1 unless set), never on its own port; under gunicorn the master serves
# every worker's (deploy/metrics.py). Unset: no metrics, and nothing counted.
try:
    METRICS = Listener.from_environ()
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

# Console logging at INFO: readable text, or one JSON object a line for a log pipeline
# (LOG_FORMAT=json; gateway/observability/logformat.py), uvicorn's own lines included.
# Nothing here formats request objects, headers or cookies; the proxy never logs the
# secret. GATEWAY_REQUEST_LOG: one line per request (OPS-LOG-1; the probes excepted),
# written in batches (gateway/observability/observe.py, RequestLog; README, "Operating").
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
GATEWAY_REQUEST_LOG = env_bool("GATEWAY_REQUEST_LOG", True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "gateway.observability.logformat.TextFormatter"},
        "json": {"()": "gateway.observability.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "apps": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gateway": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # uvicorn's own lines in the same format. Not "uvicorn" itself: dictConfig resets
        # the children of a logger it configures, which would undo --no-access-log.
        "uvicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # One INFO line per service call is noise; failures are logged by the gateway.
        "httpx": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "httpcore": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
