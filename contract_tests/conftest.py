"""Fixtures shared by the contract suites: the plug file, the fakes, the system under test.

Expensive things start once per session (``*_server`` fixtures) and are reset
before each test (``fake_llm``, ``fake_service``). Everything started here is
stopped when the session ends, also when it fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from harness.client import Session
from harness.fakes import FakeControl
from harness.plug import Plug
from harness.processes import ManagedProcess
from harness.report import ContractReport
from harness.requirements import load_requirements
from harness.suite import add_suite_options, configure_plug, session_harness
from harness.system import Fake, Harness, Running, User


def pytest_addoption(parser: pytest.Parser) -> None:
    add_suite_options(parser, "contract", "contract.json, contract.md")


def pytest_configure(config: pytest.Config) -> None:
    plug = configure_plug(config)
    config.stash[_PLUG] = plug
    report = ContractReport(
        load_requirements(), Path(config.getoption("--report-dir")), plug.name, plug.known_failures
    )
    config.pluginmanager.register(report, "contract-report")


_PLUG = pytest.StashKey[Plug]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of modules that set ``RUN_LAST = True`` run after all others, in their order.

    SEC-2 (contract_tests/test_logs.py) searches the logs of the whole run.
    """
    items.sort(key=lambda item: bool(getattr(getattr(item, "module", None), "RUN_LAST", False)))


# -- the system ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def plug(pytestconfig: pytest.Config) -> Plug:
    return pytestconfig.stash[_PLUG]


@pytest.fixture(scope="session")
def secret() -> str:
    """The shared secret of this run: random, so a leak can be searched for."""
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def harness(plug: Plug, secret: str, pytestconfig: pytest.Config) -> Iterator[Harness]:
    report_dir = pytestconfig.getoption("--report-dir")
    with session_harness(plug, report_dir, "contract", secret) as harness:
        yield harness


@pytest.fixture(scope="session")
def users() -> list[User]:
    """Two users created in every gateway: tests that need isolation use both."""
    return [User("alice", secrets.token_urlsafe(12)), User("bob", secrets.token_urlsafe(12))]


@pytest.fixture(scope="session")
def alice(users: list[User]) -> User:
    return users[0]


@pytest.fixture(scope="session")
def bob(users: list[User]) -> User:
    return users[1]


@pytest.fixture(scope="session")
def fake_llm_server(harness: Harness) -> Fake:
    return harness.start_fake_llm()


@pytest.fixture(scope="session")
def fake_service_server(harness: Harness) -> Fake:
    return harness.start_fake_service()


@pytest.fixture
def fake_llm(fake_llm_server: Fake) -> FakeControl:
    """The fake LLM, reset for this test."""
    fake_llm_server.control.reset()
    return fake_llm_server.control


@pytest.fixture
def fake_service(fake_service_server: Fake) -> FakeControl:
    """The fake internal service, reset for this test."""
    fake_service_server.control.reset()
    return fake_service_server.control


@pytest.fixture(scope="session")
def service(harness: Harness, fake_llm_server: Fake) -> Running:
    """The implementation's service, talking to the fake LLM."""
    return harness.start_service(fake_llm_server.url + "/v1")


@pytest.fixture(scope="session")
def gateway(harness: Harness, fake_service_server: Fake, users: list[User]) -> Running:
    """The implementation's gateway, in front of the fake service."""
    return harness.start_gateway(fake_service_server.url, users)


@pytest.fixture(scope="session")
def e2e_gateway(harness: Harness, service: Running, users: list[User]) -> Running:
    """The implementation's gateway in front of its own service (the whole chain)."""
    return harness.start_gateway(service.url, users)


@pytest.fixture
def start_service(harness: Harness, fake_llm_server: Fake) -> Iterator[Callable[..., Running]]:
    """Start an extra service with other knobs (and LLM); it is stopped after the test."""
    started: list[ManagedProcess] = []

    def start(*, llm_url: str | None = None, **knobs: str) -> Running:
        running = harness.start_service(llm_url or fake_llm_server.url + "/v1", **knobs)
        started.append(running.process)
        return running

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def start_gateway(
    harness: Harness, fake_service_server: Fake, users: list[User]
) -> Iterator[Callable[..., Running]]:
    """Start an extra gateway with other knobs; it is stopped after the test."""
    started: list[ManagedProcess] = []

    def start(*, service_url: str | None = None, **knobs: str) -> Running:
        running = harness.start_gateway(service_url or fake_service_server.url, users, **knobs)
        started.append(running.process)
        return running

    yield start
    for process in started:
        process.stop()


# -- clients ------------------------------------------------------------------------------------
@pytest.fixture
def service_client(service: Running, secret: str) -> Iterator[httpx.Client]:
    """A client of the implementation's service that sends the secret, as the gateway does."""
    with httpx.Client(
        base_url=service.url, headers={"X-Internal-Secret": secret}, timeout=10.0, trust_env=False
    ) as client:
        yield client


@pytest.fixture(scope="session")
def alice_session(gateway: Running, alice: User) -> Session:
    return Session.of(gateway.url, alice)


@pytest.fixture(scope="session")
def bob_session(gateway: Running, bob: User) -> Session:
    return Session.of(gateway.url, bob)


@pytest.fixture(scope="session")
def e2e_session(e2e_gateway: Running, alice: User) -> Session:
    return Session.of(e2e_gateway.url, alice)


@pytest.fixture
def alice_client(alice_session: Session) -> Iterator[httpx.Client]:
    """Alice, logged in at the gateway in front of the fake service (X-CSRFToken set)."""
    with alice_session.client() as client:
        yield client


@pytest.fixture
def bob_client(bob_session: Session) -> Iterator[httpx.Client]:
    """Bob, logged in at the same gateway as ``alice_client``."""
    with bob_session.client() as client:
        yield client


@pytest.fixture
def e2e_client(e2e_session: Session) -> Iterator[httpx.Client]:
    """Alice, logged in at the gateway of the whole chain."""
    with e2e_session.client() as client:
        yield client
