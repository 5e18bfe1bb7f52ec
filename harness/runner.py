"""Run a suite in its own pytest process, from the checkout or from an installed copy.

The selfcheck, the side-by-side report and the ``proxy-contract`` command start
the suites this way, so a team runs them against its plug file from any
directory: paths are made absolute, the suites are found next to this package,
and pytest reads the kit's own settings (``harness/pytest.ini``), never a
``pytest.ini`` or ``pyproject.toml`` of the directory it was started from.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

#: Where the suites are: the checkout, or site-packages when installed.
SUITES_ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Path(__file__).with_name("pytest.ini")
#: What ``--suite NAME`` runs (``proxy-contract run``, ``harness.matrix run``). ``gateway``:
#: everything that judges a gateway (its suite, the whole chain, and the run-wide PROB/SEC-3
#: judgement of contract_tests/test_observed.py); ``service`` likewise.
SUITES: dict[str, tuple[str, ...]] = {
    "contract": ("contract_tests",),
    "gateway": ("contract_tests/gateway", "contract_tests/e2e", "contract_tests/test_observed.py"),
    "service": ("contract_tests/service", "contract_tests/test_observed.py"),
}


def pytest_command(
    suites: Sequence[str],
    *,
    impl: Path,
    report_dir: Path,
    extra: Sequence[str] = (),
) -> list[str]:
    """The argv that runs ``suites`` (``contract_tests/gateway``...) against ``impl``."""
    paths = [str(SUITES_ROOT / suite) for suite in suites]
    return [
        sys.executable,
        "-m",
        "pytest",
        *paths,
        "-c",
        str(SETTINGS),
        "--rootdir",
        str(SUITES_ROOT),
        "-p",
        "no:cacheprovider",
        "--impl",
        str(impl.resolve()),
        "--report-dir",
        str(report_dir.resolve()),
        *extra,
    ]


def run_suites(
    suites: Sequence[str],
    *,
    impl: Path,
    report_dir: Path,
    extra: Sequence[str] = (),
    capture: bool = False,
    timeout: float = 3600,
) -> subprocess.CompletedProcess[str]:
    """Run ``suites`` against ``impl`` and wait (at most ``timeout`` seconds)."""
    argv = pytest_command(suites, impl=impl, report_dir=report_dir, extra=extra)
    return subprocess.run(
        argv,
        cwd=SUITES_ROOT,
        capture_output=capture,
        text=True,
        check=False,
        timeout=timeout,
    )
