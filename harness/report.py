"""A pytest plugin that ties tests to requirements and writes the contract report.

Tests say which requirement they check with ``@pytest.mark.req("GW-PROXY-3")``.
The plugin refuses unknown IDs and test names that do not start with the ID,
marks the tests of an implementation's ``known_failures`` as expected failures,
and writes ``contract.json`` and ``contract.md`` with each requirement, its
level, its tests and their outcomes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from .requirements import OWN_SUITES, Requirement, marked_ids, own_suite

MARKER = "req"


def requirement_ids(item: pytest.Item) -> list[str]:
    return [str(i) for mark in item.iter_markers(MARKER) for i in mark.args]


class ContractReport:
    """Collects outcomes per requirement; registered by contract_tests/conftest.py."""

    def __init__(
        self,
        requirements: Mapping[str, Requirement],
        report_dir: Path,
        implementation: str,
        known_failures: Mapping[str, str],
    ) -> None:
        self.requirements = requirements
        self.report_dir = report_dir
        self.implementation = implementation
        self.known_failures = known_failures
        self.tests: dict[str, list[str]] = {}  # nodeid -> requirement ids
        self.outcomes: dict[str, str] = {}  # nodeid -> passed/failed/skipped/xfailed/...
        self.started = time.time()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        errors = []
        for item in items:
            ids = requirement_ids(item)
            if not ids:
                continue
            unknown = [rid for rid in ids if rid not in self.requirements]
            if unknown:
                errors.append(f"{item.nodeid}: unknown requirement(s) {unknown}")
                continue
            prefixes = tuple(self.requirements[rid].test_prefix for rid in ids)
            if not getattr(item, "originalname", item.name).startswith(prefixes):
                errors.append(f"{item.nodeid}: name must start with one of {list(prefixes)}")
            for rid in ids:
                if rid in self.known_failures:
                    item.add_marker(
                        pytest.mark.xfail(
                            reason=f"known failure of {self.implementation}: "
                            f"{self.known_failures[rid]}",
                            strict=False,
                        )
                    )
            self.tests[item.nodeid] = ids
        if errors:
            raise pytest.UsageError("requirement markers:\n  " + "\n  ".join(errors))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.tests:
            return
        if report.when != "call" and report.outcome == "passed":
            return
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.outcome == "skipped" else "xpassed"
        elif report.outcome == "failed" and report.when != "call":
            # The system under test did not get as far as the assertion (it did not
            # start, or a fixture broke): not the same as a rule found broken.
            outcome = "error"
        if self.outcomes.get(report.nodeid) not in ("failed", "error"):
            self.outcomes[report.nodeid] = outcome

    def summary(self) -> dict[str, Any]:
        per_req: dict[str, dict[str, Any]] = {}
        elsewhere = {rid: own_suite(files) for rid, files in marked_ids(OWN_SUITES).items()}
        for rid, req in self.requirements.items():
            tests = [
                {"test": nodeid, "outcome": self.outcomes.get(nodeid, "not run")}
                for nodeid, ids in self.tests.items()
                if rid in ids
            ]
            outcomes = {t["outcome"] for t in tests}
            if not tests and elsewhere.get(rid):
                # PERF/FUZZ/SOAK: measured by their own nox session and report.
                status = f"in {elsewhere[rid]}"
            elif not tests:
                status = "untested"
            elif outcomes & {"failed", "error"}:
                status = "failed"
            elif "xfailed" in outcomes or "xpassed" in outcomes:
                status = "known failure"
            elif outcomes == {"passed"}:
                status = "passed"
            elif "passed" in outcomes:
                status = "partly run"
            else:
                status = "not run"
            per_req[rid] = {
                "id": rid,
                "level": req.level,
                "text": req.text,
                "status": status,
                "tests": tests,
            }
        counts: dict[str, int] = {}
        for entry in per_req.values():
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        return {
            "implementation": self.implementation,
            "duration_s": round(time.time() - self.started, 1),
            "requirements": list(per_req.values()),
            "counts": counts,
            "tests": {
                "total": len(self.tests),
                "passed": sum(o == "passed" for o in self.outcomes.values()),
                "failed": sum(o == "failed" for o in self.outcomes.values()),
                "errors": sum(o == "error" for o in self.outcomes.values()),
            },
        }

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.tests:  # no test of a requirement was collected: no contract report
            return
        summary = self.summary()
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / "contract.json").write_text(json.dumps(summary, indent=2) + "\n")
        (self.report_dir / "contract.md").write_text(render_markdown(summary))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tests:
            return
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.summary()["counts"].items()))
        terminalreporter.write_line(
            f"contract report: {counts} -> {self.report_dir / 'contract.md'}"
        )


def render_markdown(summary: Mapping[str, Any]) -> str:
    tests = summary["tests"]
    lines = [
        f"# Contract report: {summary['implementation']}",
        "",
        f"Tests: {tests['total']} collected, {tests['passed']} passed, {tests['failed']} failed, "
        f"{tests['errors']} errors; {summary['duration_s']} s. Requirements: "
        + ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
        + ".",
        "",
        "| requirement | level | status | tests (passed/run) |",
        "|---|---|---|---|",
    ]
    for entry in summary["requirements"]:
        lines.append(
            f"| {entry['id']} | {entry['level']} | {entry['status']} | "
            f"{_grouped(entry['tests']) or '—'} |"
        )
    return "\n".join(lines) + "\n"


def _grouped(tests: list[dict[str, str]]) -> str:
    """One entry per test function: parametrized cases are counted, not listed."""
    groups: dict[str, list[str]] = {}
    for test in tests:
        name = test["test"].split("::")[-1].split("[")[0]
        groups.setdefault(name, []).append(test["outcome"])
    return "<br>".join(
        f"`{name}` {outcomes.count('passed')}/{len(outcomes)}"
        + ("" if set(outcomes) == {"passed"} else f" ({', '.join(sorted(set(outcomes)))})")
        for name, outcomes in groups.items()
    )
