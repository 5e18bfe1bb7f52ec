"""The cluster: 4 hosts (netns), private Redis and PostgreSQL, the harness over cluster.toml.

``cluster`` builds the hosts and servers once per session (cluster_tests/cluster.py),
writes the topology file the launchers read (``$CLUSTER_TOPOLOGY``) and removes
everything at the end, also on failure, Ctrl-C or SIGTERM (fixture teardown, plus
``atexit`` as a second line). It first sweeps what a crashed earlier run left.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_tests.cluster import Cluster, missing_prerequisites, netns_mode, running_cluster
from harness.plug import Plug, PlugError, load_plug
from harness.suite import add_option, new_secret, session_harness, stop_cleanly_on_sigterm
from harness.system import REPO, Fake, Harness, Running, User

__all__ = ["Cluster"]  # tests import it from here

HERE = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cluster", "cluster suite")
    add_option(
        group,
        "--cluster-plug",
        default=str(HERE / "cluster.toml"),
        metavar="PLUG.toml",
        help="plug file whose tiers run as clusters (default: %(default)s)",
    )
    add_option(
        group,
        "--cluster-dir",
        default=str(REPO / "reports" / "cluster"),
        metavar="DIR",
        help="where each run's logs and topology file go (default: %(default)s)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "req(*ids): the requirement IDs (spec/requirements.md) this test checks"
    )
    config.addinivalue_line("filterwarnings", r"error::Warning:cluster_tests(\..*)?")
    stop_cleanly_on_sigterm()


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """The hosts and shared servers of the session; everything removed at its end."""
    if missing := missing_prerequisites():
        pytest.fail("the cluster suite needs " + ", ".join(missing), pytrace=False)
    try:
        mode = netns_mode()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    with running_cluster(Path(pytestconfig.getoption("--cluster-dir")), mode=mode) as built:
        yield built


# -- the system under test, started by the contract harness from the plug file ----------------
@pytest.fixture(scope="session")
def plug(pytestconfig: pytest.Config) -> Plug:
    try:
        return load_plug(pytestconfig.getoption("--cluster-plug"))
    except PlugError as exc:
        raise pytest.UsageError(f"plug file: {exc}") from None


@pytest.fixture(scope="session")
def secret() -> str:
    return new_secret()


@pytest.fixture(scope="session")
def harness(cluster: Cluster, plug: Plug, secret: str) -> Iterator[Harness]:
    """The contract harness; it stops every launcher (and so every tier) before ``cluster``."""
    with session_harness(plug, cluster.run_dir, "cluster", secret) as harness:
        yield harness


@pytest.fixture(scope="session")
def users() -> list[User]:
    return [User("alice", secrets.token_urlsafe(12)), User("bob", secrets.token_urlsafe(12))]


@pytest.fixture(scope="session")
def fake_llm_server(harness: Harness) -> Fake:
    return harness.start_fake_llm()


@pytest.fixture(scope="session")
def service_tier(harness: Harness, fake_llm_server: Fake) -> Running:
    """The service on svc1 and svc2, balanced on 127.0.0.1 (and the infra address)."""
    return harness.start_service(fake_llm_server.url + "/v1")


@pytest.fixture(scope="session")
def gateway_tier(harness: Harness, service_tier: Running, users: list[User]) -> Running:
    """The gateway on gw1 and gw2 in front of the service tier, balanced on 127.0.0.1."""
    return harness.start_gateway(service_tier.url, users)


@pytest.fixture(scope="session")
def alice(users: list[User]) -> User:
    return users[0]


@pytest.fixture(scope="session")
def bob(users: list[User]) -> User:
    return users[1]


@pytest.fixture(scope="session")
def limited_tier(harness: Harness, users: list[User]) -> tuple[Running, Fake]:
    """The gateway tier with tight limits, in front of a fake service (what crossed it shows).

    4 streams per user (LIMIT-3's default) and 6 quiz requests per user per day: no
    window ends while the suite runs. Chat keeps the suites' generous rate. Held
    streams stay open for longer than the suites' 3-s read timeout (CLUSTER-5).
    """
    fake = harness.start_fake_service()
    gateway = harness.start_gateway(
        fake.url, users, max_streams_per_user="4", quiz_rate="6/d", read_timeout="30"
    )
    return gateway, fake


@pytest.fixture(autouse=True)
def _fresh_fakes(request: pytest.FixtureRequest) -> None:
    """Behaviours a test programmed at a session's fake never reach the next test."""
    if "limited_tier" in request.fixturenames:
        request.getfixturevalue("limited_tier")[1].control.reset()
    if "fake_llm_server" in request.fixturenames:
        request.getfixturevalue("fake_llm_server").control.reset()


@pytest.fixture(scope="session")
def findings(pytestconfig: pytest.Config) -> Iterator[dict[str, object]]:
    """What the fault and limit tests saw, by requirement: reports/cluster-findings.json.

    The numbers a reader of the run wants (how many were refused, what a killed
    worker's clients got, how long slots took to come back), kept beside the verdicts.
    """
    found: dict[str, object] = {}
    yield found
    if found:
        out = REPO / "reports" / "cluster-findings.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n", encoding="utf-8")
