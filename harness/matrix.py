"""Any implementation, side by side: one page with a row per requirement, a column per plug.

    python -m harness.matrix run [--out DIR] [--timeout S] [--jobs N] PLUG.toml ... [-- PYTEST ARGS]
    python -m harness.matrix render [--out DIR] RESULT_DIR ...

``run`` runs the contract suites once per plug file, each in its own pytest process
writing ``<out>/<slug>/contract.json`` (a failing run is expected and does not stop
the others), then renders. ``render`` builds the page from existing ``contract.json``
files only. Both write ``<out>/matrix.json`` and ``<out>/index.html``: one
self-contained page (no external CSS, JS or fonts) whose columns keep the order of
the arguments.

The page is a pure function of ``matrix.json`` (:func:`render_html`), which is a pure
function of the per-implementation results (:func:`build_matrix`).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .plug import PlugError, load_plug
from .requirements import ROOT
from .runner import SUITES, pytest_command

DEFAULT_OUT = ROOT / "reports" / "matrix"
DEFAULT_TIMEOUT_S = 1800.0
#: How long a run that timed out gets to stop its servers after SIGTERM.
STOP_GRACE_S = 60.0
#: How much of the first failure message a cell shows; the rest is in its title/details.
CELL_CHARS = 200
TEXT_CHARS = 160

#: Cell kinds in legend order, with what each means.
KINDS: dict[str, str] = {
    "pass": "every test of the requirement that ran passed",
    "fail": "a test failed (its first message is shown; all failing tests under "
    "the cell) or errored before it could check anything",
    "known failure": "the plug file lists the requirement in known_failures; "
    "its tests ran and failed (or passed unexpectedly) without failing the run",
    "not configurable": "the tests could not run: the implementation does not honour "
    "the knob(s) named; a MUST here fails the run",
    "partly run": "the tests that ran passed, others were skipped",
    "untested": "no test of the requirement ran here (deselected, skipped, measured "
    "by another suite, or no report)",
}
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


# -- the matrix: pure functions of the results ---------------------------------------------------
def cell_of(entry: Mapping[str, Any] | None, known_failures: Mapping[str, str]) -> dict[str, Any]:
    """The cell of one requirement for one implementation, from its ``contract.json`` entry."""
    if entry is None:
        return {"kind": "untested", "status": None, "detail": "no report", "tests": []}
    status = str(entry.get("status", ""))
    tests = list(entry.get("tests", []))
    passed = sum(t.get("outcome") == "passed" for t in tests)
    cell: dict[str, Any] = {"status": status, "passed": passed, "total": len(tests)}
    if status == "passed":
        return {**cell, "kind": "pass", "detail": f"{passed}/{len(tests)} tests", "tests": []}
    if status == "failed":
        bad = [_brief(t) for t in tests if t.get("outcome") in ("failed", "error")]
        first = next((t for t in bad if t["outcome"] == "failed"), bad[0] if bad else None)
        message = "" if first is None else first.get("message", "")
        if first is not None and first["outcome"] == "error":
            message = "error before the check: " + message
        return {
            **cell,
            "kind": "fail",
            "detail": message or "(no message)",
            "first_test": None if first is None else first["test"],
            "tests": bad,
        }
    if status == "known failure":
        rid = str(entry.get("id", ""))
        shown = [_brief(t) for t in tests if t.get("outcome") in ("xfailed", "xpassed")]
        xpassed = sum(t["outcome"] == "xpassed" for t in shown)
        detail = known_failures.get(rid) or next(
            (t.get("message", "") for t in shown if t.get("message")), ""
        )
        if xpassed:
            detail += f" ({xpassed} of {len(tests)} tests passed unexpectedly)"
        return {**cell, "kind": "known failure", "detail": detail, "tests": shown}
    if status == "not configurable" or any(t.get("outcome") == "not configurable" for t in tests):
        knobs = list(dict.fromkeys(k for t in tests for k in t.get("knobs", ())))
        kind = "not configurable" if status == "not configurable" else "partly run"
        detail = "knob: " + (", ".join(knobs) or "(unnamed)")
        if kind == "partly run":
            detail = f"{passed}/{len(tests)} passed; not configurable: {', '.join(knobs)}"
        shown = [_brief(t) for t in tests if t.get("outcome") != "passed"]
        return {**cell, "kind": kind, "detail": detail, "knobs": knobs, "tests": shown}
    if status == "partly run":
        reason = _first_reason(tests)
        detail = f"{passed}/{len(tests)} passed" + (f"; skipped: {reason}" if reason else "")
        shown = [_brief(t) for t in tests if t.get("outcome") != "passed"]
        return {**cell, "kind": "partly run", "detail": detail, "tests": shown}
    if status.startswith("in "):
        detail = f"measured by {status[3:]}, not by the contract suites"
    elif status == "untested":
        detail = "no test of it in this run"
    elif status == "not run":
        reason = _first_reason(tests)
        detail = "not run" + (f": {reason}" if reason else "")
    else:
        detail = status or "no status"
    return {**cell, "kind": "untested", "detail": detail, "tests": []}


def _brief(test: Mapping[str, Any]) -> dict[str, Any]:
    return {k: test[k] for k in ("test", "outcome", "message", "knobs", "reason") if k in test}


def _first_reason(tests: Sequence[Mapping[str, Any]]) -> str:
    return next((str(t["reason"]) for t in tests if t.get("reason")), "")


def build_matrix(results: Sequence[Mapping[str, Any]], generated: str = "") -> dict[str, Any]:
    """``matrix.json``: the implementations in the given order, a row per requirement.

    Each result holds ``name``, ``plug``, ``slug`` and ``summary`` (the parsed
    ``contract.json``, or None when the run left none), and optionally ``error``,
    ``exit_code``, ``duration_s`` and ``log``.
    """
    rows: dict[str, dict[str, Any]] = {}
    for result in results:
        for entry in (result.get("summary") or {}).get("requirements", []):
            rows.setdefault(
                entry["id"],
                {"id": entry["id"], "level": entry.get("level", ""), "text": entry.get("text", "")},
            )
    implementations = []
    for column, result in enumerate(results):
        summary = result.get("summary") or {}
        known = summary.get("known_failures") or {}
        entries = {e["id"]: e for e in summary.get("requirements", [])}
        counts = dict.fromkeys(KINDS, 0)
        for row in rows.values():
            cell = cell_of(entries.get(row["id"]), known)
            row.setdefault("cells", []).append(cell)
            counts[cell["kind"]] += 1
        duration = result.get("duration_s", summary.get("duration_s"))
        implementations.append(
            {
                "column": column,
                "name": result.get("name") or summary.get("implementation") or f"#{column + 1}",
                "plug": result.get("plug") or summary.get("plug"),
                "slug": result.get("slug"),
                "counts": counts,
                "tests": summary.get("tests"),
                "duration_s": duration,
                "exit_code": result.get("exit_code"),
                "error": result.get("error"),
                "log": result.get("log"),
                "files": result.get("files"),
            }
        )
    return {
        "generated": generated,
        "kinds": KINDS,
        "implementations": implementations,
        "rows": list(rows.values()),
    }


# -- the page: a pure function of matrix.json ----------------------------------------------------
def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def shorten(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters, cut at a word, ``…`` when cut."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def first_line(message: str) -> str:
    """What a cell shows of a failure: its first line, without ``AssertionError: ``."""
    lines = [line for line in str(message).splitlines() if line.strip()]
    return (lines[0] if lines else "").strip().removeprefix("AssertionError: ")


_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_CODE = re.compile(r"`([^`<>]+)`")


def _requirement_text(text: str) -> str:
    """The requirement's short text, escaped; `code` spans kept as <code>."""
    plain = _MD_LINK.sub(r"\1", text).replace("**", "")
    return _CODE.sub(r"<code>\1</code>", esc(shorten(plain, TEXT_CHARS)))


def _kind_class(kind: str) -> str:
    return "k-" + kind.replace(" ", "-")


def _test_name(nodeid: str) -> str:
    return nodeid.split("::")[-1]


def _render_cell(cell: Mapping[str, Any]) -> str:
    kind = cell["kind"]
    detail = str(cell.get("detail", ""))
    shown = first_line(detail) if kind == "fail" else detail
    title = detail
    if kind == "fail" and cell.get("first_test"):
        title = f"{cell['first_test']}\n{detail}"
    count = ""
    if cell.get("total") and kind in ("pass", "fail", "partly run"):
        count = f' <span class="n">{cell.get("passed", 0)}/{cell["total"]}</span>'
    parts = [
        f'<td class="c {_kind_class(kind)}" title="{esc(title)}">',
        f'<span class="kind">{esc(kind)}</span>{count}',
    ]
    if shown and kind != "pass" and cell.get("status") != "untested":
        parts.append(f'<div class="msg">{esc(shorten(shown, CELL_CHARS))}</div>')
    tests = cell.get("tests") or []
    if tests:
        items = []
        for test in tests:
            what = test.get("message") or test.get("reason") or ""
            if test.get("knobs") and not what:
                what = "not configurable: " + ", ".join(test["knobs"])
            body = f"<pre>{esc(what)}</pre>" if what else ""
            items.append(
                f'<li><code title="{esc(test["test"])}">{esc(_test_name(test["test"]))}</code>'
                f' <span class="o">{esc(test.get("outcome", ""))}</span>{body}</li>'
            )
        noun = "test" if len(tests) == 1 else "tests"
        parts.append(
            f"<details><summary>{len(tests)} {noun}</summary><ol>{''.join(items)}</ol></details>"
        )
    parts.append("</td>")
    return "".join(parts)


def _render_header(impl: Mapping[str, Any]) -> str:
    counts = "".join(
        f'<li class="{_kind_class(kind)}" title="{esc(kind)}">{n} {esc(kind)}</li>'
        for kind, n in impl["counts"].items()
        if n
    )
    facts = []
    if impl.get("plug"):
        facts.append(f'<div class="plug">{esc(impl["plug"])}</div>')
    when = []
    if impl.get("duration_s") is not None:
        when.append(f"{float(impl['duration_s']):.0f} s")
    if impl.get("exit_code") is not None:
        when.append(f"pytest exit {impl['exit_code']}")
    if when:
        facts.append(f'<div class="when">{esc(", ".join(when))}</div>')
    if impl.get("error"):
        facts.append(f'<div class="error">{esc(impl["error"])}</div>')
    links = [
        f'<a href="{esc(quote(href))}">{esc(href.rsplit("/", 1)[-1])}</a>'
        for href in impl.get("files") or ()
    ]
    if links:
        facts.append(f'<div class="when">{" · ".join(links)}</div>')
    return (
        f'<th class="impl" scope="col"><div class="name">{esc(impl["name"])}</div>'
        f'{"".join(facts)}<ul class="counts">{counts}</ul></th>'
    )


def render_html(matrix: Mapping[str, Any]) -> str:
    """The self-contained page of ``matrix.json``: every value escaped, nothing fetched."""
    impls = matrix["implementations"]
    legend = "".join(
        f'<li><span class="kind {_kind_class(kind)}">{esc(kind)}</span> {esc(meaning)}</li>'
        for kind, meaning in matrix["kinds"].items()
    )
    rows = []
    for row in matrix["rows"]:
        kinds = {cell["kind"] for cell in row["cells"]}
        classes = []
        if kinds == {"pass"}:
            classes.append("all-pass")
        if kinds == {"untested"}:
            classes.append("all-untested")
        rows.append(
            f'<tr id="{esc(row["id"])}" class="{" ".join(classes)}">'
            f'<th scope="row"><a href="#{esc(row["id"])}">{esc(row["id"])}</a></th>'
            f'<td class="lvl lvl-{esc(row["level"]).lower()}">{esc(row["level"])}</td>'
            f'<td class="text" title="{esc(row["text"])}">{_requirement_text(row["text"])}</td>'
            + "".join(_render_cell(cell) for cell in row["cells"])
            + "</tr>"
        )
    names = ", ".join(impl["name"] for impl in impls)
    generated = f", generated {matrix['generated']}" if matrix.get("generated") else ""
    return _PAGE.format(
        title=esc(f"Contract matrix: {names}"),
        style=_STYLE,
        summary=esc(
            f"{len(matrix['rows'])} requirements, {len(impls)} implementation"
            f"{'' if len(impls) == 1 else 's'}{generated}."
        ),
        legend=legend,
        headers="".join(_render_header(impl) for impl in impls),
        min_width=f"{32.5 + 12 * len(impls):g}",  # the widths in _STYLE
        rows="\n".join(rows),
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>Contract matrix</h1>
<p>{summary} A row per requirement of <code>spec/requirements.md</code>, a column per
implementation, in the order they were given. Hover a cell for its full message.</p>
<ul class="legend">{legend}</ul>
<p class="filters">
<label><input type="checkbox" id="hide-pass"> hide rows every implementation passes</label>
<label><input type="checkbox" id="hide-untested"> hide rows no implementation ran</label>
</p>
</header>
<table style="min-width: {min_width}rem">
<thead><tr><th scope="col">requirement</th><th scope="col">level</th><th scope="col">text</th>
{headers}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""

_STYLE = """
:root { --pass: #d3f0d8; --fail: #f9d0d0; --known: #fde3bd; --nc: #dcd3f5;
  --partly: #fbf3c4; --untested: #ececec; --line: #c8c8c8; }
body { font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0 1rem 2rem; color: #1d1d1d; background: #fff; }
h1 { font-size: 1.3rem; margin: 1rem 0 .3rem; }
header p { margin: .3rem 0; max-width: 70rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12px; }
.legend { list-style: none; padding: 0; margin: .5rem 0; display: grid;
  grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: .25rem .8rem; }
.kind { display: inline-block; font-weight: 600; padding: 0 .35rem; border-radius: 3px; }
.legend .kind { min-width: 8.5rem; border: 1px solid var(--line); }
.filters label { margin-right: 1.2rem; }
body:has(#hide-pass:checked) tr.all-pass,
body:has(#hide-untested:checked) tr.all-untested { display: none; }
table { border-collapse: separate; border-spacing: 0; width: 100%; table-layout: fixed; }
th, td { border-bottom: 1px solid var(--line); border-right: 1px solid var(--line);
  padding: .3rem .4rem; vertical-align: top; text-align: left; overflow-wrap: anywhere; }
thead th { position: sticky; top: 0; background: #f7f7f7; z-index: 1;
  border-top: 1px solid var(--line); }
thead th:nth-child(1) { width: 8.5rem; }
thead th:nth-child(2) { width: 4rem; }
thead th:nth-child(3) { width: 20rem; }
th.impl { min-width: 12rem; }
th.impl .name { font-size: 1rem; }
th.impl .plug, th.impl .when { font-weight: normal; color: #555; font-size: 11px; }
th.impl .error { font-weight: normal; color: #8b0000; white-space: pre-wrap; }
.counts { list-style: none; padding: 0; margin: .3rem 0 0; display: flex;
  flex-wrap: wrap; gap: .2rem; font-weight: normal; font-size: 11px; }
.counts li { padding: 0 .3rem; border-radius: 3px; border: 1px solid var(--line); }
tbody th a { color: inherit; text-decoration: none; }
tbody tr:target th, tbody tr:target td.text { outline: 2px solid #3366cc; }
.lvl-must { font-weight: 600; }
td.text { color: #333; }
td.c .n { color: #444; font-size: 11px; }
td.c .msg { margin-top: .15rem; font-family: ui-monospace, Menlo, Consolas, monospace;
  font-size: 11.5px; white-space: pre-wrap; }
details summary { cursor: pointer; color: #333; font-size: 11px; margin-top: .2rem; }
details ol { margin: .2rem 0; padding-left: 1.2rem; }
details pre { white-space: pre-wrap; margin: .1rem 0 .3rem; max-height: 14rem;
  overflow: auto; background: rgba(255, 255, 255, .55); padding: .2rem; }
details .o { color: #555; font-size: 11px; }
.k-pass { background: var(--pass); }
.k-fail { background: var(--fail); }
.k-known-failure { background: var(--known); }
.k-not-configurable { background: var(--nc); }
.k-partly-run { background: var(--partly); }
.k-untested { background: var(--untested); color: #555; }
"""


# -- reading and running -----------------------------------------------------------------------
def display_path(path: Path) -> str:
    path = path.resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def load_result(result_dir: Path) -> dict[str, Any]:
    """One column from a directory: its ``contract.json``, and the ``run.json`` of ``run``."""
    result: dict[str, Any] = {"slug": result_dir.name, "dir": str(result_dir.resolve())}
    run_file = result_dir / "run.json"
    if run_file.is_file():
        result.update(json.loads(run_file.read_text()))
    try:
        summary = json.loads((result_dir / "contract.json").read_text())
    except FileNotFoundError:
        summary = None
        result.setdefault("error", f"no contract.json in {display_path(result_dir)}")
    except ValueError as exc:
        summary = None
        result["error"] = f"{display_path(result_dir / 'contract.json')}: {exc}"
    result["summary"] = summary
    result["name"] = result.get("name") or (summary or {}).get("implementation") or result_dir.name
    if summary is not None and summary.get("plug"):
        result.setdefault("plug", display_path(Path(summary["plug"])))  # relative when ours
    return result


def slugs(plugs: Sequence[Path]) -> list[str]:
    """A directory name per plug file, from its stem; distinct, in order."""
    found: list[str] = []
    for plug in plugs:
        base = _SLUG.sub("-", plug.stem).strip("-") or "plug"
        slug, n = base, 1
        while slug in found:
            n += 1
            slug = f"{base}-{n}"
        found.append(slug)
    return found


def pytest_argv(
    plug: Path, result_dir: Path, extra: Sequence[str], suite: str = "contract"
) -> list[str]:
    """The pytest command of one column: ``suite``'s paths unless ``extra`` names tests.

    Test paths in ``extra`` are relative to the repository (the suites' root).
    """
    suites = [] if any(_is_test_path(arg) for arg in extra) else list(SUITES[suite])
    return pytest_command(
        suites, impl=plug, report_dir=result_dir, extra=["-q", "--durations=15", *extra]
    )


def _is_test_path(arg: str) -> bool:
    path = ROOT / arg.split("::")[0]
    return not arg.startswith("-") and (path.is_dir() or path.suffix == ".py")


def run_plug(
    plug: Path, result_dir: Path, extra: Sequence[str], timeout: float, suite: str = "contract"
) -> dict[str, Any]:
    """Run the contract suites against one plug file; its column (``run.json`` written too)."""
    result_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("contract.json", "contract.md", "run.json"):
        (result_dir / stale).unlink(missing_ok=True)
    run: dict[str, Any] = {"name": plug.stem, "plug": display_path(plug)}
    try:
        run["name"] = load_plug(plug).name
    except PlugError as exc:
        run["error"] = f"plug file does not load: {exc}"
    if "error" not in run:
        log = result_dir / "pytest.log"
        run["log"] = display_path(log)
        started = time.monotonic()
        run["exit_code"], error = _run_logged(
            pytest_argv(plug, result_dir, extra, suite), log, timeout
        )
        run["duration_s"] = round(time.monotonic() - started, 1)
        if error:
            run["error"] = error
        elif not (result_dir / "contract.json").is_file():
            run["error"] = f"no contract report (pytest exit {run['exit_code']}): " + _tail(log)
        elif run["exit_code"] not in (0, 1):
            run["error"] = f"pytest exit {run['exit_code']}: " + _tail(log)
    (result_dir / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    return {**load_result(result_dir), **run}


def run_columns(
    plugs: Sequence[Path],
    out: Path,
    extra: Sequence[str],
    timeout: float,
    suite: str = "contract",
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Run every plug file (``jobs`` at a time), each into ``out/<slug>``; columns in order."""
    columns = list(zip(plugs, slugs(plugs), strict=True))
    for plug, slug in columns:
        print(f"matrix: {display_path(plug)} -> {display_path(out / slug)}", flush=True)

    def one(column: tuple[Path, str]) -> dict[str, Any]:
        plug, slug = column
        result = run_plug(plug.resolve(), out / slug, extra, timeout, suite)
        print("matrix:   " + _column_line(result), flush=True)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, columns))


def _run_logged(argv: list[str], log: Path, timeout: float) -> tuple[int | None, str | None]:
    """Run ``argv`` in the repository, output to ``log``; (exit code, error if it overran)."""
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            return process.wait(timeout=timeout), None
        except subprocess.TimeoutExpired:
            _stop(process)
            return process.returncode, f"timed out after {timeout:.0f} s"
        except KeyboardInterrupt:
            _stop(process)  # it got the SIGINT too; let it stop its servers
            raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (pytest unwinds and stops every server it started), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)


def write_matrix(results: Sequence[Mapping[str, Any]], out: Path) -> dict[str, Any]:
    """Write ``matrix.json`` and ``index.html`` into ``out``; the matrix."""
    linked = [{**result, "files": _files(result, out)} for result in results]
    matrix = build_matrix(linked, generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix.json").write_text(json.dumps(matrix, indent=2) + "\n")
    (out / "index.html").write_text(render_html(matrix), encoding="utf-8")
    return matrix


def _files(result: Mapping[str, Any], out: Path) -> list[str]:
    """Links from the page to the column's own reports and log, relative to ``out``."""
    directory = result.get("dir")
    if not directory:
        return []
    found = [Path(directory) / name for name in ("contract.md", "pytest.log")]
    return [os.path.relpath(path, out.resolve()) for path in found if path.is_file()]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, extra = args[:at], args[at + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m harness.matrix", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the contract suites per plug file, then render")
    run.add_argument("plugs", nargs="+", type=Path, metavar="PLUG.toml")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    run.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per plug file"
    )
    run.add_argument(
        "--suite", choices=sorted(SUITES), default="contract", help="what to run per plug file"
    )
    run.add_argument(
        "--jobs", type=int, default=1, help="plug files run at once (each its own pytest)"
    )
    render = commands.add_parser("render", help="render from existing contract.json files")
    render.add_argument("results", nargs="+", type=Path, metavar="RESULT_DIR")
    render.add_argument("--out", type=Path, default=DEFAULT_OUT)
    opts = parser.parse_args(args)
    opts.out = opts.out.resolve()  # the suites run from the repository, not from here
    if opts.command == "render" and extra:
        parser.error("render takes no pytest arguments")

    if opts.command == "run":
        results = run_columns(opts.plugs, opts.out, extra, opts.timeout, opts.suite, opts.jobs)
    else:
        results = [load_result(path) for path in opts.results]
    matrix = write_matrix(results, opts.out)
    print(f"matrix: {display_path(opts.out / 'index.html')} (and matrix.json)")
    broken = [impl["name"] for impl in matrix["implementations"] if impl["error"]]
    if broken:
        print(f"matrix: no complete result for {', '.join(broken)} (see the column's note)")
    return 1 if broken else 0


def _column_line(result: Mapping[str, Any]) -> str:
    if result.get("error"):
        return f"{result.get('name')}: {result['error']}"
    counts = (result.get("summary") or {}).get("counts", {})
    said = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{result.get('name')}: {said} ({result.get('duration_s')} s)"


if __name__ == "__main__":
    sys.exit(main())
