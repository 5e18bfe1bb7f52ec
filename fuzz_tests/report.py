"""Count the examples schemathesis actually ran and write reports/fuzz.{json,md}.

Each test calls :meth:`FuzzReport.record` once per generated case, so the report
quotes what ran (per operation, per generation mode and per phase), not what was
configured; the numbers go in the closing note of FUZZ-1/FUZZ-2.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from schemathesis import Case


class FuzzReport:
    """Registered as a pytest plugin by fuzz_tests/conftest.py."""

    def __init__(self, report_dir: Path, implementation: str, seed: int | None) -> None:
        self.report_dir = report_dir
        self.implementation = implementation
        self.seed = seed
        self.started = time.time()
        # suite -> operation label -> "mode/phase" -> count
        self.counts: dict[str, dict[str, Counter[str]]] = {}
        # suite -> operation label -> HTTP status -> count (the stateful run's answers)
        self.statuses: dict[str, dict[str, Counter[int]]] = {}
        self.outcomes: dict[str, str] = {}
        self.notes: dict[str, str] = {}

    def record(self, suite: str, case: Case) -> None:
        mode = phase = "unknown"
        if case.meta is not None:
            mode = case.meta.generation.mode.value
            phase = case.meta.phase.name.value
        per_operation = self.counts.setdefault(suite, {})
        per_operation.setdefault(case.operation.label, Counter())[f"{mode}/{phase}"] += 1

    def record_status(self, suite: str, case: Case, status: int) -> None:
        per_operation = self.statuses.setdefault(suite, {})
        per_operation.setdefault(case.operation.label, Counter())[status] += 1

    def note(self, suite: str, text: str) -> None:
        self.notes[suite] = text

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid] = report.outcome

    def summary(self) -> dict[str, Any]:
        suites = {}
        for suite, operations in sorted(self.counts.items()):
            suites[suite] = {
                label: {
                    "total": sum(counter.values()),
                    "positive": sum(n for k, n in counter.items() if k.startswith("positive/")),
                    "negative": sum(n for k, n in counter.items() if k.startswith("negative/")),
                    "by_mode_and_phase": dict(sorted(counter.items())),
                }
                for label, counter in sorted(operations.items())
            }
        return {
            "implementation": self.implementation,
            "seed": self.seed,
            "duration_s": round(time.time() - self.started, 1),
            "suites": suites,
            "statuses": {
                suite: {label: dict(sorted(c.items())) for label, c in sorted(ops.items())}
                for suite, ops in sorted(self.statuses.items())
            },
            "notes": self.notes,
            "tests": dict(sorted(self.outcomes.items())),
        }

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.counts:
            return  # nothing ran (collection only, or deselected): keep the last report
        summary = self.summary()
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / "fuzz.json").write_text(json.dumps(summary, indent=2) + "\n")
        (self.report_dir / "fuzz.md").write_text(render_markdown(summary))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.counts:
            return
        terminalreporter.section("fuzz: examples run per operation")
        terminalreporter.write_line(f"schemathesis seed: {self.seed}")
        for suite, operations in self.summary()["suites"].items():
            for label, row in operations.items():
                terminalreporter.write_line(
                    f"{suite:10} {label:32} {row['total']:5} "
                    f"(positive {row['positive']}, negative {row['negative']})"
                )
        terminalreporter.write_line(f"report: {self.report_dir / 'fuzz.md'}")


def render_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Fuzz report",
        "",
        f"Implementation: `{summary['implementation']}`; schemathesis seed "
        f"`{summary['seed']}`; run time {summary['duration_s']} s.",
        "",
        "Examples actually sent per operation (every generated case, all phases:",
        "explicit examples, coverage, fuzzing; positive and negative data).",
        "",
    ]
    for suite, operations in summary["suites"].items():
        lines += [
            f"## {suite}",
            "",
            "| operation | examples | positive | negative | by mode/phase |",
            "|---|---:|---:|---:|---|",
        ]
        for label, row in operations.items():
            detail = ", ".join(f"{k}: {n}" for k, n in row["by_mode_and_phase"].items())
            lines.append(
                f"| `{label}` | {row['total']} | {row['positive']} | {row['negative']} | {detail} |"
            )
        for label, counts in summary["statuses"].get(suite, {}).items():
            answers = ", ".join(f"{status}: {n}" for status, n in counts.items())
            lines.append(f"\n`{label}` answered {answers}.")
        if suite in summary["notes"]:
            lines += ["", summary["notes"][suite]]
        lines.append("")
    lines += ["## Tests", "", "| test | outcome |", "|---|---|"]
    lines += [f"| `{nodeid}` | {outcome} |" for nodeid, outcome in summary["tests"].items()]
    return "\n".join(lines) + "\n"
