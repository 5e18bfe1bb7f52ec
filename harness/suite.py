"""What every suite's conftest shares: the options, the plug file, the harness.

perf_tests, fuzz_tests and soak_tests are run on their own (``nox -s perf`` ...)
or together with contract_tests; each registers the same ``--impl`` and
``--report-dir`` options (the second registration is skipped), loads the plug
file once at configure time, and runs one :class:`Harness` per session that
stops everything it started, also when a test fails.
"""

from __future__ import annotations

import contextlib
import resource
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.plug import Plug, PlugError, load_plug
from harness.system import REPO, Harness

DEFAULT_PLUG = REPO / "implementation" / "implementation.toml"
DEFAULT_REPORT_DIR = REPO / "reports"


def add_option(group: Any, *args: str, **kwargs: Any) -> None:
    """``group.addoption``, unless another suite's conftest added it already."""
    with contextlib.suppress(ValueError):
        group.addoption(*args, **kwargs)


def add_suite_options(parser: pytest.Parser, name: str, writes: str) -> Any:
    """``--impl`` and ``--report-dir`` in the option group ``name``; returns the group."""
    group = parser.getgroup(name, f"{name} suite")
    add_option(
        group,
        "--impl",
        default=str(DEFAULT_PLUG),
        metavar="PLUG.toml",
        help="plug file of the implementation under test (default: %(default)s)",
    )
    add_option(
        group,
        "--report-dir",
        default=str(DEFAULT_REPORT_DIR),
        metavar="DIR",
        help=f"where {writes} and the process logs go",
    )
    return group


def configure_plug(config: pytest.Config) -> Plug:
    """Register the ``req`` marker and load ``--impl`` (a bad plug file: one usage line)."""
    config.addinivalue_line(
        "markers", "req(*ids): the requirement IDs (spec/requirements.md) this test checks"
    )
    stop_cleanly_on_sigterm()
    try:
        return load_plug(config.getoption("--impl"))
    except PlugError as exc:
        raise pytest.UsageError(f"plug file: {exc}") from None


def stop_cleanly_on_sigterm() -> None:
    """Make SIGTERM (a CI timeout, ``kill``) unwind like Ctrl-C, so every server is stopped.

    Python's default for SIGTERM ends the process at once: no fixture teardown
    runs and the servers the suite started outlive it. As KeyboardInterrupt,
    pytest finishes its teardown (``Harness.stop_all``) before exiting.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def raise_nofile_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit, before any server starts (they inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def new_secret() -> str:
    """A random shared secret; never starting with "-", which a command line reads as an option."""
    return "s" + secrets.token_urlsafe(32)


@contextlib.contextmanager
def session_harness(
    plug: Plug, report_dir: Path | str, suite: str, secret: str | None = None
) -> Iterator[Harness]:
    """A Harness logging to ``<report_dir>/logs/<suite>-<time>/``; everything stopped on exit."""
    run_dir = Path(report_dir) / "logs" / f"{suite}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    harness = Harness(plug, run_dir, secret or new_secret())
    try:
        yield harness
    finally:
        harness.stop_all()
