"""Answers the suites saw, kept to be judged once by the requirement they concern.

A test about status codes asserts status codes. Whether each error answer was also
a problem document (PROB-1), leaked nothing (PROB-2) and, at the gateway, carried
SEC-3's headers is recorded here as the tests go, and judged by those requirements'
own tests at the end of the run (contract_tests/test_observed.py). So an
implementation whose problem bodies lack ``detail`` fails PROB-1, with every
offending answer listed, instead of failing a hundred tests about other rules.

The record lives in the pytest process (the suites run in one process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Observation:
    """One answer a test saw, and what was wrong with it (empty: nothing)."""

    test: str
    request: str
    status: int
    violations: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.test}: {self.request} -> {self.status}: {'; '.join(self.violations)}"


#: Per requirement ID, the answers checked against it so far in this run.
SEEN: dict[str, list[Observation]] = {}


def record(rule: str, response: httpx.Response, violations: list[str]) -> None:
    """Note that ``response`` was checked against ``rule`` and what was wrong (if anything)."""
    SEEN.setdefault(rule, []).append(_observation(response, violations))


def seen(rule: str) -> list[Observation]:
    return SEEN.get(rule, [])


def _observation(response: httpx.Response, violations: list[str]) -> Observation:
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
    try:
        request = f"{response.request.method} {response.request.url.path}"
    except RuntimeError:  # a response built by hand, without its request
        request = "?"
    return Observation(test, request, response.status_code, tuple(violations))


def summary(observations: list[Observation], rule: str, limit: int = 10) -> str:
    """One message for the offenders among ``observations``: how many, and the first few."""
    bad = [o for o in observations if o.violations]
    lines = [f"{len(bad)} of {len(observations)} answers the suites saw break {rule}:"]
    lines += [f"  {o.describe()}" for o in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)
