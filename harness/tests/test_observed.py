"""harness/observed.py: what a failure of PROB-1/PROB-2's run-wide tests prints."""

from __future__ import annotations

import httpx

from harness import observed
from harness.client import assert_problem, problem_violations


def answer(status: int, **kwargs: object) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1:1/api/chat/")
    return httpx.Response(status, request=request, **kwargs)  # type: ignore[arg-type]


def test_a_status_assertion_records_the_problem_shape_instead_of_judging_it() -> None:
    before = len(observed.seen("PROB-1"))
    try:
        body = assert_problem(answer(401, json={"type": "about:blank", "title": "No"}), 401)
        assert body == {"type": "about:blank", "title": "No"}
        found = observed.seen("PROB-1")[-1]
        assert found.request == "POST /api/chat/"
        assert found.status == 401
        assert "test_a_status_assertion_records" in found.test
        assert found.violations  # application/json, no status, no detail
    finally:
        del observed.SEEN["PROB-1"][before:]


def test_a_problem_document_has_no_violations() -> None:
    body = {"type": "about:blank", "title": "Too many", "status": 429, "detail": "Slow down."}
    response = answer(429, json=body, headers={"content-type": "application/problem+json"})
    assert problem_violations(response, 429) == []


def test_each_missing_member_is_named() -> None:
    response = answer(
        404,
        content=b'{"title": "x", "status": 400}',
        headers={"content-type": "application/problem+json; charset=utf-8"},
    )
    assert problem_violations(response, 404) == [
        "the body lacks 'type'",
        "the body lacks 'detail'",
        "its status member is 400, not 404",
    ]


def test_the_summary_counts_offenders_and_lists_the_first_few() -> None:
    good = observed.Observation("t::a", "GET /", 404, ())
    bad = [
        observed.Observation(f"t::b{n}", "POST /api/chat/", 401, ("no detail",)) for n in range(3)
    ]
    text = observed.summary([good, *bad], "PROB-1", limit=2)
    assert text.splitlines() == [
        "3 of 4 answers the suites saw break PROB-1:",
        "  t::b0: POST /api/chat/ -> 401: no detail",
        "  t::b1: POST /api/chat/ -> 401: no detail",
        "  ... and 1 more",
    ]
