"""Unit tests of the Django gateway: env, Django setup, a test database and fixtures.

The service is mocked with respx (at httpx's transport layer), so these tests
say nothing about pooling, keep-alive or disconnects over real sockets: the
contract suites cover those against real processes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

IMPLEMENTATION = Path(__file__).resolve().parents[2]
if str(IMPLEMENTATION) not in sys.path:
    sys.path.insert(0, str(IMPLEMENTATION))

STATE_DIR = Path(tempfile.mkdtemp(prefix="gateway-unit-"))
#: A Redis of the developer's or CI's to test shared state against (with a key prefix
#: of our own, removed afterwards); without it the tests start a private redis-server.
REDIS_URL = os.environ.get("REDIS_URL", "")
SERVICE_URL = "http://127.0.0.1:8001"
SECRET = "unit-test-shared-secret-9f2c"
PASSWORD = "alice-password-1"

# Set, not setdefault: a developer's shell must not change what the tests see.
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "lamla.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "unit-test-django-secret-key",
        "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "DJANGO_DB_PATH": str(STATE_DIR / "db.sqlite3"),
        "CORS_ALLOWED_ORIGINS": "http://localhost:3000",
        "SERVICE_BASE_URL": SERVICE_URL,
        "SERVICE_SECRET": SECRET,
        # The test process is not a worker: keep its garbage collector as it is.
        "GATEWAY_GC_TUNING": "0",
        # Far above what these tests send per user; test_limits.py sets its own.
        "GATEWAY_RATE_LIMIT_CHAT": "100000/m",
        "GATEWAY_RATE_LIMIT_QUIZ": "100000/m",
        "GATEWAY_MAX_STREAMS_PER_USER": "1000",
        # The seed's sync views are routed, so test_legacy.py can reach them.
        "GATEWAY_LEGACY_VIEWS": "1",
    }
)
for _name in (
    "SERVICE_KEEPALIVE_EXPIRY",
    "FASTAPI_KEEPALIVE_EXPIRY",
    "SERVICE_KEEPALIVE_TIMEOUT",
    "FASTAPI_KEEPALIVE_TIMEOUT",
    "SERVICE_HTTP2",
    "FASTAPI_HTTP2",
    "SERVICE_TRANSPORT",
    "FASTAPI_TRANSPORT",
    "MAX_UPLOAD_SIZE",
    "MAX_JSON_BODY",
    "GATEWAY_FAST_PATH",
    # The embedded default: SQLite and per-worker limits (test_shared_state.py sets its own).
    "DATABASE_URL",
    "REDIS_URL",
    "GATEWAY_REDIS_PREFIX",
    "GATEWAY_STREAM_LEASE",
):
    os.environ.pop(_name, None)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

# Hashing with PBKDF2's full work factor would dominate the run time.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[None]:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    yield
    shutil.rmtree(STATE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def alice(database: None):
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="alice")
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest_asyncio.fixture
async def pooled_clients() -> AsyncIterator[None]:
    """Close this loop's pooled client after the test, as the lifespan would."""
    from gateway.upstream.client import aclose_clients

    yield
    await aclose_clients()


@pytest.fixture
def service(pooled_clients: None) -> Iterator[object]:
    """A respx router standing in for the service at SERVICE_BASE_URL.

    ``using="httpx"`` mocks at the client, so it works whatever transport
    SERVICE_TRANSPORT picks (respx's default mocks httpcore only).
    """
    import respx

    with respx.mock(base_url=SERVICE_URL, assert_all_called=False, using="httpx") as router:
        yield router


@pytest_asyncio.fixture
async def alice_client(alice):
    """Django's AsyncClient logged in as alice (CSRF checks off, as in Django's tests)."""
    from django.test import AsyncClient

    client = AsyncClient()
    await client.aforce_login(alice)
    return client


@pytest.fixture
def fresh_limits() -> Iterator[None]:
    """Counters and stream slots of one test never leak into another."""
    from gateway import limits

    limits.rate_limiter().cache.clear()
    limits.stream_slots._open.clear()
    yield
    limits.rate_limiter().cache.clear()
    limits.stream_slots._open.clear()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: REDIS_URL when set, else a private redis-server on a free port.

    No Redis at all skips (a laptop without one), except in CI, where it fails.
    """
    if REDIS_URL:
        yield REDIS_URL
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs redis-server (or REDIS_URL) for the shared-state tests")
        pytest.skip("no Redis: set REDIS_URL or install redis-server")
    import socket
    import subprocess
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)  # polling a port with a deadline, not synchronising
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)
