"""Fixtures of the performance suite: one system under test per run, and the report.

Everything starts once per session (the fake service, one gateway worker with a
large pool, nginx, the plug file's baselines) and is stopped at the end, also when a
test fails. The report is written at the end of the session.
"""

from __future__ import annotations

import contextlib
import resource
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract_tests.harness.plug import Plug, PlugError, load_plug
from contract_tests.harness.system import REPO, Fake, Harness, User
from perf_tests import wrk
from perf_tests.bench import Bench
from perf_tests.report import PerfReport

DEFAULT_PLUG = REPO / "implementation" / "implementation.toml"
LOAD_CLIENTS = ("auto", "wrk", "python")


def _option(group: Any, *args: str, **kwargs: Any) -> None:
    with contextlib.suppress(ValueError):  # added by contract_tests/conftest.py already
        group.addoption(*args, **kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perf", "performance suite")
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
        help="where perf.json, perf.md, the plots and the process logs go",
    )
    _option(
        group,
        "--load-client",
        default="auto",
        choices=LOAD_CLIENTS,
        help="small-request load client: wrk if installed (auto), wrk, or python",
    )


#: Quiet measurements first; the bursts that can leave a server busy last.
MODULE_ORDER = (
    "test_requests.py",
    "test_timing.py",
    "test_perf_1_streaming.py",
    "test_perf_2_concurrency.py",
)
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        if item.path.parent != HERE:
            return -1  # not ours: keep its place
        name = item.path.name
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    items.sort(key=rank)


_PLUG = pytest.StashKey[Plug]()
_REPORT = pytest.StashKey[PerfReport]()


def raise_nofile_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit, before any server starts (they inherit it)."""
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
        plug = load_plug(config.getoption("--impl"))
    except PlugError as exc:
        raise pytest.UsageError(f"plug file: {exc}") from None
    config.stash[_PLUG] = plug
    report = PerfReport(Path(config.getoption("--report-dir")), plug.name)
    config.stash[_REPORT] = report
    config.pluginmanager.register(report, "perf-report")


@pytest.fixture(scope="session")
def report(pytestconfig: pytest.Config) -> PerfReport:
    return pytestconfig.stash[_REPORT]


@pytest.fixture(scope="session")
def plug(pytestconfig: pytest.Config) -> Plug:
    return pytestconfig.stash[_PLUG]


@pytest.fixture(scope="session")
def harness(plug: Plug, pytestconfig: pytest.Config) -> Iterator[Harness]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(pytestconfig.getoption("--report-dir")) / "logs" / f"perf-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    # Never starting with "-": the fake's command line would read it as an option.
    harness = Harness(plug, run_dir, "s" + secrets.token_urlsafe(32))
    try:
        yield harness
    finally:
        harness.stop_all()


@pytest.fixture(scope="session")
def fake(harness: Harness) -> Fake:
    """The fake internal service every route ends at."""
    return harness.start_fake_service()


@pytest.fixture(scope="session")
def bench(harness: Harness, fake: Fake, report: PerfReport) -> Iterator[Bench]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    bench = Bench(harness, fake, User("perf", secrets.token_urlsafe(12)), nofile)
    try:
        bench.start()
        _describe_routes(bench, report)
        yield bench
    finally:
        _describe_routes(bench, report)  # a route may have failed on the way
        bench.stop()


def _describe_routes(bench: Bench, report: PerfReport) -> None:
    routes = report.data["routes"]
    for key in bench.keys:
        reason = bench.unavailable.get(key)
        routes[key] = {
            "label": bench.labels[key],
            "available": reason is None,
            "baseline": bench.is_baseline(key),
        }
        if reason:
            routes[key]["reason"] = reason
    report.data["environment"]["tools"] = dict(bench.versions)
    report.data["setup"] = bench.describe()


@pytest.fixture(scope="session")
def load_client(pytestconfig: pytest.Config, report: PerfReport) -> str | None:
    """The wrk binary to use for small-request load, or None for the asyncio client."""
    choice = pytestconfig.getoption("--load-client")
    binary = wrk.find_wrk() if choice != "python" else None
    if choice == "wrk" and binary is None:
        raise pytest.UsageError("--load-client wrk: wrk is not installed")
    if binary is not None:
        report.data["load_client"] = f"wrk {wrk.wrk_version(binary)} (2 threads, Lua script)"
    else:
        why = "" if choice == "python" else "; wrk not installed"
        report.data["load_client"] = f"perf_tests.loadgen (Python asyncio + uvloop{why})"
    return binary
