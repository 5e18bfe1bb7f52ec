"""Fixtures of the fuzz suite: the system under test, started from the plug file.

The same harness as the contract suites (`harness/`): the fake LLM, the
implementation's service and a gateway in front of it, all real processes on
loopback, started once per session and stopped at the end, also when a test fails.
Options: ``--impl PLUG.toml`` and ``--report-dir DIR`` (fuzz.json, fuzz.md, logs).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz_tests.report import FuzzReport
from fuzz_tests.schemas import CONFIG, CREDENTIALS
from harness.client import Session
from harness.plug import Plug
from harness.suite import add_suite_options, configure_plug, session_harness
from harness.system import Fake, Harness, Running, User


def pytest_addoption(parser: pytest.Parser) -> None:
    add_suite_options(parser, "fuzz", "fuzz.json, fuzz.md")


_PLUG = pytest.StashKey[Plug]()
_REPORT = pytest.StashKey[FuzzReport]()


def pytest_configure(config: pytest.Config) -> None:
    plug = configure_plug(config)
    config.stash[_PLUG] = plug
    seed = CONFIG.projects.get_default().seed
    report = FuzzReport(Path(config.getoption("--report-dir")), plug.name, seed)
    config.stash[_REPORT] = report
    config.pluginmanager.register(report, "fuzz-report")


@pytest.fixture(scope="session")
def fuzz_report(pytestconfig: pytest.Config) -> FuzzReport:
    return pytestconfig.stash[_REPORT]


@pytest.fixture(scope="session")
def plug(pytestconfig: pytest.Config) -> Plug:
    return pytestconfig.stash[_PLUG]


@pytest.fixture(scope="session")
def secret() -> str:
    """The shared secret of this run: drawn at import by fuzz_tests.schemas (see there)."""
    return CREDENTIALS.secret


@pytest.fixture(scope="session")
def harness(plug: Plug, secret: str, pytestconfig: pytest.Config) -> Iterator[Harness]:
    report_dir = pytestconfig.getoption("--report-dir")
    with session_harness(plug, report_dir, "fuzz", secret) as harness:
        yield harness


@pytest.fixture(scope="session")
def users() -> list[User]:
    return [User("alice", secrets.token_urlsafe(12))]


@pytest.fixture(scope="session")
def fake_llm_server(harness: Harness) -> Fake:
    """The fake LLM: answers every chat completion deterministically."""
    return harness.start_fake_llm()


@pytest.fixture(scope="session")
def service(harness: Harness, fake_llm_server: Fake) -> Running:
    """The implementation's service, talking to the fake LLM."""
    return harness.start_service(fake_llm_server.url + "/v1")


@pytest.fixture(scope="session")
def gateway(harness: Harness, service: Running, users: list[User]) -> Running:
    """The implementation's gateway in front of its own service (the whole chain).

    The real service rather than the fake one: the gateway relays the service's
    validation (422) of bodies it does not inspect itself, and only the real service
    validates as the OpenAPI documents say. The optional legacy routes are on, so
    they are fuzzed like the others (off, they would only answer 404).
    """
    return harness.start_gateway(service.url, users, legacy_views="1")


@pytest.fixture(scope="session")
def gateway_session(gateway: Running, users: list[User]) -> Session:
    """Alice's logged-in session at the gateway: cookies and CSRF token."""
    return Session.of(gateway.url, users[0])
