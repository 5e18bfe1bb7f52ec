"""harness/report.py: what the contract report says of each requirement."""

from __future__ import annotations

from pathlib import Path

from harness.report import ContractReport
from harness.requirements import Requirement, load_requirements


def report_of(requirements: dict[str, Requirement], tmp_path: Path) -> dict[str, str]:
    report = ContractReport(requirements, tmp_path, "impl", known_failures={})
    return {entry["id"]: entry["status"] for entry in report.summary()["requirements"]}


def test_requirements_measured_by_their_own_suites_say_which(tmp_path: Path) -> None:
    spec = load_requirements()
    statuses = report_of(spec, tmp_path)  # a run with no contract test at all
    assert statuses["PERF-1"] == "in perf_tests"
    assert statuses["FUZZ-2"] == "in fuzz_tests"
    assert statuses["SOAK-1"] == "in soak_tests"
    assert statuses["GW-PROXY-3"] == "untested"  # its tests are contract tests, not run here


def test_a_requirement_no_suite_names_is_untested(tmp_path: Path) -> None:
    nowhere = Requirement("NOWHERE-1", "MUST", "nothing checks this")
    assert report_of({"NOWHERE-1": nowhere}, tmp_path) == {"NOWHERE-1": "untested"}
