"""A pytest plugin that ties tests to requirements and writes the contract report.

Tests say which requirement they check with ``@pytest.mark.req("GW-PROXY-3")``.
The plugin refuses unknown IDs and test names that do not start with the ID,
marks the tests of an implementation's ``known_failures`` as expected failures,
and writes ``contract.json`` and ``contract.md`` with each requirement, its
level, its tests and their outcomes (with the first lines of each failure's
message).

A test that cannot run because the implementation does not honour a knob skips
with ``pytest.skip("not configurable: <knob>[, <knob>...]")``: its outcome is
"not configurable", and so is its requirement's status when none of its tests
passed or failed. A MUST requirement that ends "not configurable" fails the
session (unless the plug file lists it in ``known_failures``).
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
#: How a skip reason says that the implementation does not honour a knob.
NOT_CONFIGURABLE = "not configurable: "
#: The most of a failure message kept per test: its first lines, not a traceback.
MESSAGE_LINES = 12
MESSAGE_CHARS = 2000


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
        self.messages: dict[str, str] = {}  # nodeid -> first lines of its failure/error
        self.knobs: dict[str, list[str]] = {}  # nodeid -> knobs it could not set
        self.reasons: dict[str, str] = {}  # nodeid -> why it was skipped
        self.plug_path: str | None = None
        self.started = time.time()
        self._summary: dict[str, Any] | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.plug_path = session.config.getoption("--impl", default=None)

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
        elif report.outcome == "skipped":
            reason = skip_reason(report)
            self.reasons[report.nodeid] = reason
            if reason.startswith(NOT_CONFIGURABLE):
                outcome = "not configurable"
                self.knobs[report.nodeid] = parse_knobs(reason)
        if self.outcomes.get(report.nodeid) in ("failed", "error"):
            return  # a teardown error after a failure: the failure is the news
        self.outcomes[report.nodeid] = outcome
        if outcome in ("failed", "error", "xfailed"):
            self.messages[report.nodeid] = failure_message(report)

    def summary(self) -> dict[str, Any]:
        per_req: dict[str, dict[str, Any]] = {}
        elsewhere = {rid: own_suite(files) for rid, files in marked_ids(OWN_SUITES).items()}
        for rid, req in self.requirements.items():
            tests = [self._test_entry(nodeid) for nodeid, ids in self.tests.items() if rid in ids]
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
            elif "not configurable" in outcomes and "passed" not in outcomes:
                status = "not configurable"
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
            "plug": self.plug_path,
            "duration_s": round(time.time() - self.started, 1),
            "requirements": list(per_req.values()),
            "counts": counts,
            "known_failures": dict(self.known_failures),
            "tests": {
                "total": len(self.tests),
                "passed": sum(o == "passed" for o in self.outcomes.values()),
                "failed": sum(o == "failed" for o in self.outcomes.values()),
                "errors": sum(o == "error" for o in self.outcomes.values()),
                "not_configurable": sum(o == "not configurable" for o in self.outcomes.values()),
            },
        }

    def _test_entry(self, nodeid: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"test": nodeid, "outcome": self.outcomes.get(nodeid, "not run")}
        if nodeid in self.messages:
            entry["message"] = self.messages[nodeid]
        if entry["outcome"] == "not configurable":
            entry["knobs"] = self.knobs[nodeid]
        if entry["outcome"] in ("not configurable", "skipped") and nodeid in self.reasons:
            entry["reason"] = self.reasons[nodeid]
        return entry

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.tests:  # no test of a requirement was collected: no contract report
            return
        summary = self._summary = self.summary()
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / "contract.json").write_text(json.dumps(summary, indent=2) + "\n")
        (self.report_dir / "contract.md").write_text(render_markdown(summary))
        if must_not_configurable(summary) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.tests:
            return
        summary = self._summary or self.summary()
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["counts"].items()))
        terminalreporter.write_line(
            f"contract report: {counts} -> {self.report_dir / 'contract.md'}"
        )
        for rid, knobs in must_not_configurable(summary).items():
            terminalreporter.write_line(
                f"MUST requirement {rid} is not configurable in {self.implementation}: "
                f"knob(s) {', '.join(knobs)} not honoured",
                red=True,
                bold=True,
            )


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skipped test gave, without pytest's ``Skipped: `` prefix."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr or "")
    return reason.removeprefix("Skipped: ")


def parse_knobs(reason: str) -> list[str]:
    """``"not configurable: chat_rate, quiz_rate (fixed: chat_rate=5/m)"`` -> the knob names.

    What follows the names in parentheses (harness/knobs.py says which values are
    fixed) stays in the test's ``reason``.
    """
    listed = reason.removeprefix(NOT_CONFIGURABLE).splitlines()
    names = (listed[0] if listed else "").split(" (", 1)[0]
    knobs = [k.strip() for k in names.split(",")]
    return [k for k in knobs if k] or ["(unnamed)"]


def failure_message(report: pytest.TestReport) -> str:
    """The first lines of what failed: the exception line and assertion, not the traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    if crash is None:  # a plain string longrepr: its last lines say what happened
        text = "\n".join(text.strip().splitlines()[-MESSAGE_LINES:])
    lines = text.strip().splitlines()[:MESSAGE_LINES]
    message = "\n".join(line.rstrip() for line in lines)
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return message


def must_not_configurable(summary: Mapping[str, Any]) -> dict[str, list[str]]:
    """MUST requirements whose collected tests could not run for want of a knob -> the knobs.

    The session fails on them: a MUST cannot be waived by not offering its knob.
    A requirement the plug file lists in ``known_failures`` is waived knowingly.
    """
    waived = summary.get("known_failures") or {}
    found: dict[str, list[str]] = {}
    for entry in summary["requirements"]:
        if entry["level"] != "MUST" or entry["status"] != "not configurable":
            continue
        if entry["id"] in waived:
            continue
        knobs = [k for t in entry["tests"] for k in t.get("knobs", ())]
        found[entry["id"]] = list(dict.fromkeys(knobs))
    return found


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
    problems = [
        (entry["id"], test)
        for entry in summary["requirements"]
        for test in entry["tests"]
        if test["outcome"] in ("failed", "error", "not configurable")
    ]
    if problems:
        lines += ["", "## Failures and knobs not honoured", ""]
        for rid, test in problems:
            if test["outcome"] == "not configurable":
                detail = "not configurable: " + ", ".join(test.get("knobs", []))
            else:
                first = (test.get("message") or "").strip().splitlines()
                detail = f"{test['outcome']}: {first[0] if first else '(no message)'}"
            lines.append(f"- {rid} `{test['test']}`: {detail}")
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
