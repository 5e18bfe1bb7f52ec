"""harness/matrix.py: implementations side by side, one cell per requirement and plug file.

The page is built from ``contract.json`` files alone, so these tests write small
synthetic ones: each test reads as a statement of what a cell or column shows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.matrix import (
    CELL_CHARS,
    KINDS,
    build_matrix,
    cell_of,
    main,
    pytest_argv,
    render_html,
    slugs,
)
from harness.requirements import ROOT


def case(outcome: str, name: str = "test_x", **extra: Any) -> dict[str, Any]:
    """One test of a requirement in contract.json."""
    return {"test": f"contract_tests/test_x.py::{name}", "outcome": outcome, **extra}


def requirement(rid: str, status: str, *tests: dict[str, Any], level: str = "MUST") -> dict:
    return {
        "id": rid,
        "level": level,
        "text": f"{rid} text",
        "status": status,
        "tests": list(tests),
    }


def contract(name: str, *requirements: dict, known: dict[str, str] | None = None) -> dict:
    """A contract.json as harness/report.py writes it (only the keys the matrix reads)."""
    return {
        "implementation": name,
        "plug": f"{name}.toml",
        "duration_s": 12.5,
        "requirements": list(requirements),
        "known_failures": known or {},
    }


def column(summary: dict | None, **run: Any) -> dict[str, Any]:
    return {"summary": summary, **run}


# -- cells ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        (requirement("R-1", "passed", case("passed")), "pass"),
        (requirement("R-1", "failed", case("passed"), case("failed", message="no")), "fail"),
        (requirement("R-1", "failed", case("error", message="did not start")), "fail"),
        (requirement("R-1", "known failure", case("xfailed", message="bad")), "known failure"),
        (
            requirement("R-1", "not configurable", case("not configurable", knobs=["chat_rate"])),
            "not configurable",
        ),
        (
            requirement("R-1", "partly run", case("passed"), case("not configurable", knobs=["x"])),
            "partly run",
        ),
        (requirement("R-1", "partly run", case("passed"), case("skipped")), "partly run"),
        (requirement("R-1", "not run", case("skipped", reason="wrk missing")), "untested"),
        (requirement("R-1", "untested"), "untested"),
        (requirement("PERF-1", "in perf_tests"), "untested"),
        (None, "untested"),  # the implementation left no report
    ],
)
def test_each_requirement_status_is_one_kind_of_cell(entry: dict | None, kind: str) -> None:
    assert cell_of(entry, {})["kind"] == kind


def test_a_failing_cell_shows_the_first_message_of_the_first_failing_test() -> None:
    entry = requirement(
        "R-1",
        "failed",
        case("error", "test_a", message="RuntimeError: gateway did not start"),
        case("failed", "test_b", message="AssertionError: expected 502, got 500\nassert 500"),
        case("failed", "test_c", message="AssertionError: second"),
    )
    cell = cell_of(entry, {})
    # An assertion that failed says more about the implementation than a setup error.
    assert cell["detail"] == "AssertionError: expected 502, got 500\nassert 500"
    assert cell["first_test"].endswith("::test_b")
    assert [t["test"].split("::")[-1] for t in cell["tests"]] == ["test_a", "test_b", "test_c"]
    page = render_html(build_matrix([column(contract("a", entry))]))
    assert '<div class="msg">expected 502, got 500</div>' in page


def test_a_cell_of_errors_only_says_the_check_was_not_reached() -> None:
    entry = requirement("R-1", "failed", case("error", message="RuntimeError: no port"))
    assert cell_of(entry, {})["detail"] == "error before the check: RuntimeError: no port"


def test_a_long_message_is_cut_in_the_cell_and_whole_in_the_details() -> None:
    long = "AssertionError: " + "x" * 500
    entry = requirement("R-1", "failed", case("failed", message=long))
    page = render_html(build_matrix([column(contract("a", entry))]))
    shown = re.search(r'<div class="msg">([^<]*)</div>', page)
    assert shown is not None
    assert len(shown.group(1)) <= CELL_CHARS
    assert shown.group(1).endswith("…")
    assert f"<pre>{long}</pre>" in page  # the whole message, under <details>
    assert f'title="contract_tests/test_x.py::test_x\n{long}"' in page


def test_a_not_configurable_cell_names_the_knobs() -> None:
    entry = requirement(
        "LIMIT-4",
        "not configurable",
        case("not configurable", "test_a", knobs=["chat_rate", "quiz_rate"]),
        case("not configurable", "test_b", knobs=["chat_rate"]),
    )
    cell = cell_of(entry, {})
    assert cell["knobs"] == ["chat_rate", "quiz_rate"]
    assert cell["detail"] == "knob: chat_rate, quiz_rate"


def test_a_known_failure_cell_gives_the_reason_from_the_plug_file() -> None:
    entry = requirement("R-1", "known failure", case("xfailed", message="AssertionError: 500"))
    assert cell_of(entry, {"R-1": "no HTTP/2 yet"})["detail"] == "no HTTP/2 yet"
    assert cell_of(entry, {})["detail"] == "AssertionError: 500"


def test_an_untested_cell_says_why() -> None:
    assert cell_of(requirement("PERF-1", "in perf_tests"), {})["detail"] == (
        "measured by perf_tests, not by the contract suites"
    )
    skipped = requirement("R-1", "not run", case("skipped", reason="wrk is not installed"))
    assert cell_of(skipped, {})["detail"] == "not run: wrk is not installed"
    assert cell_of(None, {})["detail"] == "no report"


# -- columns --------------------------------------------------------------------------------------
def three_columns() -> list[dict[str, Any]]:
    return [
        column(
            contract(
                "zeta", requirement("R-1", "passed", case("passed")), requirement("R-2", "untested")
            )
        ),
        column(
            contract(
                "alpha",
                requirement("R-1", "failed", case("failed", message="no")),
                requirement("R-2", "not configurable", case("not configurable", knobs=["k"])),
            )
        ),
        column(None, name="broken", plug="broken.toml", error="plug file does not load: bad key"),
    ]


def test_columns_keep_the_order_they_were_given_in() -> None:
    matrix = build_matrix(three_columns())
    assert [impl["name"] for impl in matrix["implementations"]] == ["zeta", "alpha", "broken"]
    assert [cell["kind"] for cell in matrix["rows"][0]["cells"]] == ["pass", "fail", "untested"]
    page = render_html(matrix)
    assert page.index(">zeta<") < page.index(">alpha<") < page.index(">broken<")


def test_each_column_counts_its_cells_per_kind() -> None:
    counts = [impl["counts"] for impl in build_matrix(three_columns())["implementations"]]
    assert list(counts[0]) == list(KINDS)  # every kind, in legend order
    assert {k: n for k, n in counts[0].items() if n} == {"pass": 1, "untested": 1}
    assert {k: n for k, n in counts[1].items() if n} == {"fail": 1, "not configurable": 1}
    assert {k: n for k, n in counts[2].items() if n} == {"untested": 2}


def test_a_plug_that_did_not_load_is_a_column_with_its_error() -> None:
    matrix = build_matrix(three_columns())
    broken = matrix["implementations"][2]
    assert broken["error"] == "plug file does not load: bad key"
    assert [row["cells"][2]["detail"] for row in matrix["rows"]] == ["no report", "no report"]
    assert '<div class="error">plug file does not load: bad key</div>' in render_html(matrix)


def test_rows_are_the_requirements_in_spec_order() -> None:
    matrix = build_matrix(three_columns())
    assert [(row["id"], row["level"]) for row in matrix["rows"]] == [
        ("R-1", "MUST"),
        ("R-2", "MUST"),
    ]


# -- the page -------------------------------------------------------------------------------------
HOSTILE = '<script>alert("x")</script>'


def test_every_value_from_a_report_is_escaped() -> None:
    entry = requirement("R-1", "failed", case("failed", name=f"test_a[{HOSTILE}]", message=HOSTILE))
    entry["text"] = f"text {HOSTILE}"
    summary = contract('impl"><img src=x onerror=alert(1)>', entry)
    page = render_html(build_matrix([column(summary, plug=f"{HOSTILE}.toml")]))
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_the_page_needs_nothing_from_elsewhere() -> None:
    page = render_html(build_matrix(three_columns()))
    for fetching in ("<script", "<link", " src=", "@import", "url(", "http://", "https://"):
        assert fetching not in page
    assert "<style>" in page


def test_the_legend_explains_every_kind_in_its_colour() -> None:
    page = render_html(build_matrix(three_columns()))
    legend = page[page.index('<ul class="legend">') : page.index("</ul>")]
    for kind, meaning in KINDS.items():
        css = "k-" + kind.replace(" ", "-")
        assert f'<span class="kind {css}">{kind}</span> {meaning}' in legend
        assert f".{css} {{ background:" in page


def test_requirement_text_keeps_code_spans_and_drops_link_targets() -> None:
    entry = requirement("R-1", "passed", case("passed"))
    entry["text"] = "Send `X-Internal-Secret` ([RFC 9457](https://example.org/rfc))."
    page = render_html(build_matrix([column(contract("a", entry))]))
    assert "Send <code>X-Internal-Secret</code> (RFC 9457)." in page


# -- the command ----------------------------------------------------------------------------------
def write_result(directory: Path, summary: dict) -> Path:
    directory.mkdir(parents=True)
    (directory / "contract.json").write_text(json.dumps(summary))
    (directory / "contract.md").write_text(f"# Contract report: {summary['implementation']}\n")
    return directory


def test_render_writes_the_page_and_the_json_from_result_dirs(tmp_path: Path) -> None:
    first = write_result(
        tmp_path / "b", contract("beta", requirement("R-1", "passed", case("passed")))
    )
    second = write_result(tmp_path / "a", contract("alpha", requirement("R-1", "failed")))
    missing = tmp_path / "nothing-here"
    out = tmp_path / "out"

    status = main(["render", "--out", str(out), str(first), str(second), str(missing)])

    matrix = json.loads((out / "matrix.json").read_text())
    assert [impl["name"] for impl in matrix["implementations"]] == ["beta", "alpha", "nothing-here"]
    assert matrix["implementations"][2]["error"].startswith("no contract.json in ")
    assert status == 1  # one column has no result
    page = (out / "index.html").read_text()
    assert page.startswith("<!doctype html>")
    assert '<a href="../b/contract.md">contract.md</a>' in page  # each column links its report


def test_run_makes_a_column_of_a_plug_file_that_does_not_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[service]\ncomand = ["x"]\n')
    out = tmp_path / "out"

    status = main(["run", "--out", str(out), str(bad)])

    assert status == 1
    matrix = json.loads((out / "matrix.json").read_text())
    assert matrix["implementations"][0]["error"].startswith("plug file does not load: bad.toml")
    assert (out / "bad" / "run.json").is_file()


def test_pytest_runs_every_contract_suite_unless_the_extra_args_name_tests(tmp_path: Path) -> None:
    plug, out = tmp_path / "impl.toml", tmp_path / "impl"
    everything = pytest_argv(plug, out, ["-k", "gw_proxy_3"])
    assert everything[3] == str(ROOT / "contract_tests")
    assert everything[-4:] == ["-q", "--durations=15", "-k", "gw_proxy_3"]
    assert everything[everything.index("--impl") + 1] == str(plug)
    assert everything[everything.index("--report-dir") + 1] == str(out)

    one_file = pytest_argv(plug, out, ["contract_tests/service/test_auth.py"])
    assert str(ROOT / "contract_tests") not in one_file
    assert one_file[-1] == "contract_tests/service/test_auth.py"


def test_result_directories_are_named_after_the_plug_files() -> None:
    plugs = [
        Path("implementation/implementation.toml"),
        Path("x/implementation.toml"),
        Path("a b.toml"),
    ]
    assert slugs(plugs) == ["implementation", "implementation-2", "a-b"]
