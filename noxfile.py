"""Sessions: `nox` runs every test session; `nox -s demo` runs the whole stack.

Each session installs one or more dependency groups from pyproject.toml into its
own virtualenv (uv when it is installed, virtualenv otherwise) and runs from the
checkout; nothing is installed into the system.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = [
    "lint", "unit", "contract", "report", "selfcheck", "fuzz", "perf", "soak", "cluster",
]  # fmt: skip

PYPROJECT = nox.project.load_toml("pyproject.toml")


#: Write the .pyc files at install time. Where PYTHONDONTWRITEBYTECODE is set (CI machines
#: often set it) nothing else writes them, and every process the suites start (servers,
#: `manage.py` commands, pytest runs: hundreds in a full `nox`) would compile Django,
#: httpx and the rest from source again: measured 1.46 s -> 0.74 s for one `manage.py`
#: command, 5.3 -> 4.0 min for the contract suites. pip compiles by default; uv does not.
INSTALL_ENV = {"UV_COMPILE_BYTECODE": "1"}


def install_groups(session: nox.Session, *groups: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, *groups), env=INSTALL_ENV)


def run_pytest(session: nox.Session, *default_paths: str, junit: str) -> None:
    """Run pytest with the project's strict settings.

    Posargs are passed on; the default paths are kept unless posargs name tests
    themselves, so `nox -s contract -- --impl theirs.toml` still runs every suite.
    """
    names_tests = any(_is_test_path(arg) for arg in session.posargs)
    paths = () if names_tests else default_paths
    session.run(
        "python", "-m", "pytest", f"--junitxml=reports/{junit}.xml", *paths, *session.posargs
    )


def _is_test_path(arg: str) -> bool:
    path = Path(arg.split("::")[0])
    return not arg.startswith("-") and (path.is_dir() or path.suffix == ".py")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    install_groups(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def unit(session: nox.Session) -> None:
    """Unit tests of the implementation, the fakes and the harness."""
    install_groups(session, "implementation", "test")
    run_pytest(session, "implementation/tests", "fakes/tests", "harness/tests", junit="unit")


#: The reference's other gateway path: `nox -s contract` runs the gateway suites against it too.
DJANGO_PATH = "implementation/django_path.toml"


@nox.session
def contract(session: nox.Session) -> None:
    """The contract suites over real HTTP (pass `-- --impl other.toml` for your implementation).

    Without posargs it also runs the gateway suites against the reference with its ASGI
    fast path off (implementation/django_path.toml), so either path breaking a
    requirement fails the session.
    """
    install_groups(session, "implementation", "test")
    run_pytest(session, "contract_tests", junit="contract")
    if not session.posargs:
        # Through the installed `proxy-contract` command: proves the package carries the
        # suites, the fakes and the spec, and runs them from outside the checkout.
        session.install(".", env=INSTALL_ENV)
        junit = Path("reports/contract-django-path.xml").resolve()
        session.run(
            "proxy-contract", "run", DJANGO_PATH, "--suite", "gateway",
            "--report-dir", "reports/django-path", "--", f"--junitxml={junit}",
        )  # fmt: skip


@nox.session
def selfcheck(session: nox.Session) -> None:
    """Prove the suites can fail: each deliberately broken variant must be rejected."""
    install_groups(session, "implementation", "test")
    session.run("python", "-m", "harness.selfcheck", *session.posargs)


#: The columns `nox -s report` shows by default: plug file -> where `nox -s contract` left its
#: result (reused when there; else the report runs it), or None (the report runs it).
REPORT_COLUMNS = {
    "implementation/implementation.toml": "reports",
    DJANGO_PATH: "reports/django-path",
    "implementation/legacy_views.toml": None,
    "examples/starlette_gateway/plug.toml": None,
}
MATRIX_OUT = "reports/matrix"
#: Columns the report runs at once.
REPORT_JOBS = 2


@nox.session
def report(session: nox.Session) -> None:
    """Implementations side by side, reports/matrix/: `-- a.toml b.toml [-- pytest args]`.

    Without plug files: the reference and its Django path (the results `nox -s contract`
    left, when there), the seed's sync views and the Starlette gateway (their gateway
    suites; they reuse the reference service, judged in the reference's column).
    """
    install_groups(session, "implementation", "test")
    args = list(session.posargs)
    ours = args[: args.index("--")] if "--" in args else args
    if any(arg.endswith(".toml") for arg in ours):
        session.run("python", "-m", "harness.matrix", "run", "--out", MATRIX_OUT, *args)
        return
    columns, to_run = [], {"contract": [], "gateway": []}
    for plug, previous in REPORT_COLUMNS.items():
        if previous and Path(previous, "contract.json").is_file():
            columns.append(previous)
            continue
        to_run["contract" if previous else "gateway"].append(plug)  # harness/runner.py SUITES
        columns.append(f"{MATRIX_OUT}/runs/{Path(plug).stem}")  # harness.matrix: dir per stem
    for suite, plugs in to_run.items():
        if plugs:
            # Two columns at once: each is mostly waiting (sync workers, timeouts, windows).
            session.run(
                "python", "-m", "harness.matrix", "run", "--out", f"{MATRIX_OUT}/runs",
                "--suite", suite, "--jobs", str(REPORT_JOBS), *plugs,
            )  # fmt: skip
    session.run("python", "-m", "harness.matrix", "render", "--out", MATRIX_OUT, *columns)


@nox.session
def perf(session: nox.Session) -> None:
    """The benchmark: writes reports/perf.{json,md} and plots; asserts only generous bounds."""
    install_groups(session, "implementation", "test", "perf")
    run_pytest(session, "perf_tests", junit="perf")


@nox.session
def fuzz(session: nox.Session) -> None:
    """schemathesis against the service and the gateway (FUZZ-*): fixed seed, JUnit in reports/."""
    install_groups(session, "implementation", "test")
    run_pytest(session, "fuzz_tests", junit="fuzz")


@nox.session
def soak(session: nox.Session) -> None:
    """60 s of mixed load with faults (SOAK-1): writes reports/soak.{json,md}."""
    install_groups(session, "implementation", "test")
    run_pytest(session, "soak_tests", junit="soak")


@nox.session
def cluster(session: nox.Session) -> None:
    """Two gateway and two service hosts (network namespaces) behind nginx (CLUSTER-*).

    Needs root (`ip netns`), nginx, and PostgreSQL and Redis: REDIS_URL/DATABASE_URL when
    set, else private servers from the system packages. Writes reports/cluster.{json,md}.
    """
    if os.name != "posix" or (os.geteuid() != 0 and not os.environ.get("CI")):
        # A laptop: the suite needs root for `ip netns`. CI runs it (and fails without root).
        session.skip("the cluster suite makes network namespaces: run it as root on Linux")
    install_groups(session, "implementation", "test")
    run_pytest(session, "cluster_tests", junit="cluster")


@nox.session
def demo(session: nox.Session) -> None:
    """Run fake LLM + service + gateway on loopback with a demo user; Ctrl-C stops it all."""
    install_groups(session, "implementation")
    session.run("python", "-m", "implementation.demo", *session.posargs)
