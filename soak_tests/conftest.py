"""Fixtures of the soak suite: one gateway worker in front of the fake service, logged in.

Modelled on perf_tests/conftest.py: the plug file and report directory are options,
RLIMIT_NOFILE is raised before any server starts (they inherit it), and the Harness
stops everything it started at the end of the session, also when the test fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.client import Session
from harness.plug import Plug
from harness.suite import (
    add_option,
    add_suite_options,
    configure_plug,
    raise_nofile_limit,
    session_harness,
)
from harness.system import Fake, Harness, Running, User
from soak_tests.mix import KINDS

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
    # Watched as a deployment is: the request log on (and the metrics, when the plug
    # file serves them), so SOAK-1 also proves they leak nothing over time.
    "log_format": "json",
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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = add_suite_options(parser, "soak", "soak.json, soak.md")
    add_option(
        group,
        "--soak-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="duration of the load (default: %(default)s; SOAK-1 says 60)",
    )
    add_option(
        group,
        "--soak-clients",
        type=int,
        default=200,
        metavar="N",
        help="concurrent clients (default: %(default)s; SOAK-1 says 200)",
    )
    add_option(group, "--soak-seed", type=int, default=1, metavar="N", help="seed of the mix")
    add_option(
        group,
        "--soak-kinds",
        default="",
        metavar="K1,K2",
        help="only these request kinds (to find which one a problem follows); "
        "default: the whole mix, which SOAK-1 needs",
    )


_PLUG = pytest.StashKey[Plug]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_PLUG] = configure_plug(config)
    raise_nofile_limit()


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
    with session_harness(plug, soak_config.report_dir, "soak") as harness:
        yield harness


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
