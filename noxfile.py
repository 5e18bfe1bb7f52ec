"""Sessions: `nox` runs every test session; `nox -s demo` runs the whole stack.

Each session installs one or more dependency groups from pyproject.toml into its
own virtualenv (uv when it is installed, virtualenv otherwise) and runs from the
checkout; nothing is installed into the system.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "unit", "contract", "selfcheck", "fuzz", "perf", "soak"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install_groups(session: nox.Session, *groups: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, *groups))


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


@nox.session
def contract(session: nox.Session) -> None:
    """The contract suites over real HTTP (pass `-- --impl other.toml` for your implementation)."""
    install_groups(session, "implementation", "test")
    run_pytest(session, "contract_tests", junit="contract")


@nox.session
def selfcheck(session: nox.Session) -> None:
    """Prove the suites can fail: each deliberately broken variant must be rejected."""
    install_groups(session, "implementation", "test")
    session.run("python", "-m", "harness.selfcheck", *session.posargs)


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
def demo(session: nox.Session) -> None:
    """Run fake LLM + service + gateway on loopback with a demo user; Ctrl-C stops it all."""
    install_groups(session, "implementation")
    session.run("python", "-m", "implementation.demo", *session.posargs)
