"""FUZZ-3: a stateful schemathesis run over the gateway's OpenAPI links.

spec/gateway.openapi.yaml links ``GET /api/auth/csrf/`` -> ``POST /api/auth/login/``
-> ``GET /api/auth/me/`` -> ``POST /api/auth/logout/`` (and back: logout -> me, login).
schemathesis's state machine walks those links in scenarios of up to ten steps, with
every FUZZ-1 check after each step. The state machine acts as a browser does: it keeps
the cookies the gateway sets, echoes the ``csrftoken`` cookie in ``X-CSRFToken``, and
logs in with the real user's password (positive cases; random credentials are 401s,
which FUZZ-2 covers). Scenarios are derandomized: the same run every time.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis import Case, Response

from fuzz_tests.report import FuzzReport
from fuzz_tests.schemas import CHECKS, GATEWAY_SCHEMA, SESSION_PLACEHOLDER
from harness.system import Running, User

AUTH_OPERATIONS = ["auth_csrf", "auth_login", "auth_me", "auth_logout"]
LOGIN = "POST /api/auth/login/"
SCENARIOS = 20
STEPS = 10
TIMEOUT = 10.0


def browser_state_machine(base_url: str, user: User, report: FuzzReport) -> type:
    """The links' state machine, acting like a browser of ``user`` at ``base_url``."""
    base = GATEWAY_SCHEMA.include(operation_id=AUTH_OPERATIONS).as_state_machine()

    class Browser(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            super().setup()
            self.cookies: dict[str, str] = {}  # a new browser per scenario

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": base_url, "timeout": TIMEOUT}

        def before_call(self, case: Case) -> None:
            super().before_call(case)
            report.record("stateful", case)
            positive = case.meta is None or case.meta.generation.mode.is_positive
            if case.operation.label == LOGIN and positive:
                case.body = {"username": user.username, "password": user.password}
            # The session's placeholders become this browser's cookies, or go when it has none.
            values = {**self.cookies, "X-CSRFToken": self.cookies.get("csrftoken", "")}
            for container in (case.cookies, case.headers):
                for name, value in list((container or {}).items()):
                    if value == SESSION_PLACEHOLDER:
                        if values.get(name):
                            container[name] = values[name]
                        else:
                            del container[name]

        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            report.record_status("stateful", case, response.status_code)
            for header in response.headers.get("set-cookie", []):
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(header)
                except CookieError:
                    continue
                for name, morsel in jar.items():
                    if morsel.value and morsel["max-age"] != "0":
                        self.cookies[name] = morsel.value
                    else:
                        self.cookies.pop(name, None)

        def validate_response(
            self,
            response: Response,
            case: Case,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            __tracebackhide__ = True
            case.validate_response(
                response,
                checks=CHECKS,
                transport_kwargs=kwargs or None,
                recorder=getattr(self, "recorder", None),
            )

    return Browser


@pytest.mark.req("FUZZ-3")
def test_fuzz_3_stateful_walk_over_the_auth_links_finds_no_failure(
    gateway: Running, users: list[User], fuzz_report: FuzzReport
) -> None:
    machine = browser_state_machine(gateway.url, users[0], fuzz_report)
    machine.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    fuzz_report.note(
        "stateful",
        f"{SCENARIOS} derandomized scenarios of up to {STEPS} steps over the auth links.",
    )
    # The walk must have gone through the flow, not just bounced off 401s and 403s.
    answers = fuzz_report.statuses.get("stateful", {})
    assert answers.get(LOGIN, {}).get(200), f"no scenario logged in: {answers}"
    assert answers.get("GET /api/auth/me/", {}).get(200), f"me never saw a user: {answers}"
    assert answers.get("POST /api/auth/logout/", {}).get(204), f"no logout: {answers}"
