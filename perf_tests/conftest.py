"""Fixtures of the performance suite: one system under test per run, and the report.

Everything starts once per session (the fake service, one gateway worker with a
large pool, nginx, the plug file's baselines) and is stopped at the end, also when a
test fails. The report is written at the end of the session.
"""

from __future__ import annotations

import resource
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import wrk
from harness.plug import Plug
from harness.suite import (
    add_option,
    add_suite_options,
    configure_plug,
    raise_nofile_limit,
    session_harness,
)
from harness.system import Fake, Harness, User
from perf_tests.bench import Bench
from perf_tests.report import PerfReport

LOAD_CLIENTS = ("auto", "wrk", "python")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = add_suite_options(parser, "perf", "perf.json, perf.md, the plots")
    add_option(
        group,
        "--load-client",
        default="auto",
        choices=LOAD_CLIENTS,
        help="small-request load client: wrk if installed (auto), wrk, or python",
    )


#: Quiet measurements first; the bursts that can leave a server busy last.
MODULE_ORDER = (
    "test_requests.py",
    "test_observability.py",
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


def pytest_configure(config: pytest.Config) -> None:
    plug = configure_plug(config)
    raise_nofile_limit()
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
    with session_harness(plug, pytestconfig.getoption("--report-dir"), "perf") as harness:
        yield harness


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
        report.data["load_client"] = f"perf_tests.load (Python asyncio + uvloop{why})"
    return binary
