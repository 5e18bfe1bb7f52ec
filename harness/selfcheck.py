"""Prove the suites can fail: run them against deliberately broken implementations.

Each broken variant is a plug file that declares which requirements it breaks
(``breaks = ["GW-PROXY-3"]``) and which suite directories expose it
(``suites = ["contract_tests/gateway"]``). The selfcheck runs those tests of the
suite against the variant and passes only when the run fails *and* the report
marks every broken requirement as failed: a variant rejected for the wrong
reason does not count.

    python -m harness.selfcheck [--jobs N] [PLUG.toml ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .plug import PlugError, load_plug
from .runner import SUITES_ROOT, run_suites

DEFAULT_VARIANTS = sorted((SUITES_ROOT / "implementation" / "broken").glob("*.toml"))


def check_variant(path: Path, report_root: Path) -> tuple[bool, str]:
    """Run the suites against one broken variant; (rejected as declared, explanation)."""
    plug = load_plug(path)
    if not plug.breaks or not plug.suites:
        return False, f"{path.name}: a broken variant must declare `breaks` and `suites`"
    report_dir = report_root / path.stem
    selector = " or ".join(rid.lower().replace("-", "_") for rid in plug.breaks)
    result = run_suites(
        plug.suites,
        impl=path,
        report_dir=report_dir,
        extra=["-k", selector, "-q", "--no-header", "-o", "addopts=--strict-markers"],
        capture=True,
        timeout=900,
    )
    if result.returncode == 0:
        return False, f"{path.name}: the suite PASSED against a variant that breaks {plug.breaks}"
    try:
        summary = json.loads((report_dir / "contract.json").read_text())
    except (OSError, ValueError):
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        return False, f"{path.name}: the suite errored without a report:\n{tail}"
    failed = {
        r["id"]: [t["test"].split("::")[-1] for t in r["tests"] if t["outcome"] == "failed"]
        for r in summary["requirements"]
        if r["id"] in plug.breaks
    }
    # Rejected for the right reason: an assertion of each broken requirement's tests
    # failed (a variant that does not even start errors in setup and does not count).
    missed = [rid for rid in plug.breaks if not failed.get(rid)]
    if missed:
        return False, f"{path.name}: no test of {missed} failed an assertion against it"
    count = sum(len(tests) for tests in failed.values())
    return True, f"{path.name}: rejected by {list(plug.breaks)} ({count} failing tests)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", type=Path)
    parser.add_argument("--report-dir", type=Path, default=Path("reports") / "selfcheck")
    parser.add_argument("--jobs", type=int, default=2, help="variants run at once (default 2)")
    args = parser.parse_args(argv)
    # The reference's own variants by default; so few of them means they went missing.
    if not args.variants and len(DEFAULT_VARIANTS) < 3:
        print(f"selfcheck: need at least 3 broken variants, found {len(DEFAULT_VARIANTS)}")
        return 2
    args.variants = args.variants or DEFAULT_VARIANTS

    def judge(path: Path) -> bool:
        try:
            rejected, message = check_variant(path.resolve(), args.report_dir)
        except PlugError as exc:
            rejected, message = False, str(exc)
        print(("ok    " if rejected else "FAIL  ") + message, flush=True)
        return rejected

    # Each variant is its own pytest run with its own servers: a few at once.
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        ok = all(list(pool.map(judge, args.variants)))
    verdict = "all" if ok else "NOT all"
    print(
        f"selfcheck: {verdict} of {len(args.variants)} broken variants were rejected "
        "by the requirement they break"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
