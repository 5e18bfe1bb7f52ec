"""Fixtures of the soak suite: one gateway worker in front of the fake service, logged in.

Modelled on perf_tests/conftest.py: the plug file and report directory are options,
RLIMIT_NOFILE is raised before any server starts (they inherit it), and the Harness
stops everything it started at the end of the session, also when the test fails.
"""

from __future__ import annotations

import contextlib
import resource
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from contract_tests.harness.client import Session
from contract_tests.harness.plug import Plug, PlugError, load_plug
from contract_tests.harness.system import REPO, Fake, Harness, Running, User
from soak_tests.mix import KINDS

DEFAULT_PLUG = REPO / "implementation" / "implementation.toml"

#: Knobs for 200 clients on one worker: the pool never runs out (each client holds at most
#: one upstream connection), idle connections are kept for every client, a short read
#: timeout so the hang fault answers 504 in 5 s, and per-user limits far above the load
#: (LIMIT-3/4 are not what this suite measures).
SOAK_GATEWAY_KNOBS = {
    "max_connections": "1000",
    "max_keepalive": "200",
    "connect_timeout": "2",
    "read_timeout": "5",
    "pool_timeout": "5",
    "max_streams_per_user": "100000",
    "chat_rate": "100000000/m",
    "quiz_rate": "100000000/m",
}
#: The clients share this many logged-in users (round-robin).
USERS = 4


@dataclass(frozen=True)
class SoakConfig:
    seconds: float
    clients: int
    seed: int
    report_dir: Path
    kinds: tuple[str, ...]


def _option(group: Any, *args: str, **kwargs: Any) -> None:
    with contextlib.suppress(ValueError):  # added by another suite's conftest already
        group.addoption(*args, **kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("soak", "soak suite")
    _option(
        group,
        "--impl",
        default=str(DEFAULT_PLUG),
        metavar="PLUG.toml",
        help="plug file of the implementation under test (default: %(default)s)",
    )
    _option(
        group,
        "--report-dir",
        default=str(REPO / "reports"),
        metavar="DIR",
        help="where soak.json, soak.md and the process logs go",
    )
    _option(
        group,
        "--soak-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="duration of the load (default: %(default)s; SOAK-1 says 60)",
    )
    _option(
        group,
        "--soak-clients",
        type=int,
        default=200,
        metavar="N",
        help="concurrent clients (default: %(default)s; SOAK-1 says 200)",
    )
    _option(group, "--soak-seed", type=int, default=1, metavar="N", help="seed of the mix")
    _option(
        group,
        "--soak-kinds",
        default="",
        metavar="K1,K2",
        help="only these request kinds (to find which one a problem follows); "
        "default: the whole mix, which SOAK-1 needs",
    )


_PLUG = pytest.StashKey[Plug]()


def raise_nofile_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (as perf_tests/conftest.py does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "req(*ids): the requirement IDs (spec/requirements.md) this test checks"
    )
    raise_nofile_limit()
    try:
        config.stash[_PLUG] = load_plug(config.getoption("--impl"))
    except PlugError as exc:
        raise pytest.UsageError(f"plug file: {exc}") from None


@pytest.fixture(scope="session")
def soak_config(pytestconfig: pytest.Config) -> SoakConfig:
    seconds = float(pytestconfig.getoption("--soak-seconds"))
    clients = int(pytestconfig.getoption("--soak-clients"))
    if not (1 <= seconds <= 3600 and 1 <= clients <= 5000):
        raise pytest.UsageError("--soak-seconds must be in [1, 3600], --soak-clients in [1, 5000]")
    known = [kind.name for kind in KINDS]
    kinds = tuple(k for k in str(pytestconfig.getoption("--soak-kinds")).split(",") if k)
    if set(kinds) - set(known):
        raise pytest.UsageError(f"--soak-kinds: unknown kind; known: {', '.join(known)}")
    return SoakConfig(
        seconds,
        clients,
        int(pytestconfig.getoption("--soak-seed")),
        Path(pytestconfig.getoption("--report-dir")),
        kinds or tuple(known),
    )


@pytest.fixture(scope="session")
def plug(pytestconfig: pytest.Config) -> Plug:
    return pytestconfig.stash[_PLUG]


@pytest.fixture(scope="session")
def harness(plug: Plug, soak_config: SoakConfig) -> Iterator[Harness]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = soak_config.report_dir / "logs" / f"soak-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    # Never starting with "-": the fake's command line would read it as an option.
    harness = Harness(plug, run_dir, "s" + secrets.token_urlsafe(32))
    try:
        yield harness
    finally:
        harness.stop_all()


@pytest.fixture(scope="session")
def fake(harness: Harness) -> Fake:
    """The fake internal service every proxied request ends at."""
    return harness.start_fake_service()


@pytest.fixture(scope="session")
def users() -> list[User]:
    return [User(f"soak{n}", secrets.token_urlsafe(12)) for n in range(USERS)]


@pytest.fixture(scope="session")
def gateway(harness: Harness, fake: Fake, users: list[User]) -> Running:
    """One gateway worker from the plug file, in front of the fake service."""
    return harness.start_gateway(fake.url, users, **SOAK_GATEWAY_KNOBS)


@pytest.fixture(scope="session")
def sessions(gateway: Running, users: list[User]) -> list[Session]:
    """One logged-in session (cookies + CSRF token) per user."""
    return [Session.of(gateway.url, user) for user in users]
