"""What the probe tests of both components share (OPS-PROBE-*): asking, and reading the answer."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import httpx

from harness.client import http_client

#: OPS-PROBE-2: a readiness answer comes within this, ready or not.
READY_WITHIN = 3.0


def ask(base_url: str, path: str) -> tuple[httpx.Response, float]:
    """``GET path`` on a bare client (a probe carries no cookie); the answer and its seconds."""
    with http_client(base_url) as client:
        started = time.monotonic()
        response = client.get(path)
        return response, time.monotonic() - started


def checks_of(body: dict[str, Any], states: Collection[str]) -> dict[str, str]:
    """The readiness ``checks`` object of ``body``: a non-empty map of names to ``states``."""
    checks = body.get("checks")
    assert isinstance(checks, dict), f"no checks object: {body}"
    assert checks, f"an empty checks object: {body}"
    assert all(isinstance(k, str) and v in states for k, v in checks.items()), checks
    return checks


def assert_ready(base_url: str, states: Collection[str]) -> None:
    """/readyz answers 200 ``ready`` in time, no check failing."""
    response, took = ask(base_url, "/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready", body
    assert "fail" not in checks_of(body, states).values(), body
    assert took < READY_WITHIN, f"readiness took {took:.2f} s"


def readiness_answers(base_url: str, until: float) -> list[str]:
    """Ask /readyz on fresh connections until ``until`` (monotonic): each answer as
    ``"<status>:<draining check>"``, or ``"refused"`` when no connection was served."""
    answers = []
    while time.monotonic() < until:
        try:
            response, _ = ask(base_url, "/readyz")
            state = response.json().get("checks", {}).get("draining", "?")
            answers.append(f"{response.status_code}:{state}")
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            answers.append("refused")
        except ValueError:
            answers.append("not json")
        time.sleep(0.05)  # poll interval, not synchronisation
    return answers


def assert_not_ready_after_sigterm(answers: list[str]) -> None:
    """OPS-PROBE-3: every answer after SIGTERM is a draining 503 or a refusal."""
    assert answers, "readiness was never asked"
    assert not [a for a in answers if a.startswith("200")], f"/readyz said 200: {answers}"
    assert set(answers) <= {"503:fail", "refused"}, f"neither draining nor refused: {answers}"
