"""``proxy-contract``: run the contract suites against your implementation, from anywhere.

    proxy-contract run PLUG.toml [--report-dir DIR] [--suite contract] [-- PYTEST_ARGS]
    proxy-contract report PLUG.toml [PLUG.toml ...] [--out DIR]
    proxy-contract requirements [--level MUST|SHOULD]
    proxy-contract selfcheck BROKEN.toml [BROKEN.toml ...]

Plug files and directories are taken relative to where you run it; the suites,
the fakes and the spec come with the package (``pip install <checkout>``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import matrix, selfcheck
from .plug import PlugError, load_plug
from .requirements import load_requirements
from .runner import SUITES, SUITES_ROOT, run_suites


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed_on: list[str] = []
    if "--" in argv:  # what follows goes to pytest (run) as it is
        argv, passed_on = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = _parser().parse_args(argv)
    if passed_on and args.command != "run":
        _parser().error("only `run` passes arguments after -- on to pytest")
    handler = {
        "run": _run,
        "report": _report,
        "requirements": _requirements,
        "selfcheck": _selfcheck,
    }[args.command]
    return handler(args, passed_on)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxy-contract", description=(__doc__ or "").splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a suite against one plug file")
    run.add_argument("plug", type=Path, help="your plug file (harness/README.md)")
    run.add_argument("--suite", choices=sorted(SUITES), default="contract")
    run.add_argument("--report-dir", type=Path, default=Path("reports"))

    report = commands.add_parser("report", help="several implementations side by side (HTML)")
    report.add_argument("plugs", nargs="+", type=Path)
    report.add_argument("--out", type=Path, default=Path("reports") / "matrix")
    report.add_argument("--suite", choices=sorted(SUITES), default="contract")

    requirements = commands.add_parser("requirements", help="list the requirements")
    requirements.add_argument("--level", choices=("MUST", "SHOULD"))

    check = commands.add_parser("selfcheck", help="each broken variant must be rejected")
    check.add_argument("variants", nargs="+", type=Path)
    check.add_argument("--report-dir", type=Path, default=Path("reports") / "selfcheck")
    return parser


def _run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    try:
        load_plug(args.plug)  # a broken plug file: one line, before pytest starts
    except PlugError as exc:
        print(f"proxy-contract: {exc}", file=sys.stderr)
        return 2
    suites = SUITES[args.suite]
    print(f"proxy-contract: {', '.join(suites)} ({SUITES_ROOT}) against {args.plug}", flush=True)
    result = run_suites(suites, impl=args.plug, report_dir=args.report_dir, extra=pytest_args)
    return result.returncode


def _report(args: argparse.Namespace, _: list[str]) -> int:
    return matrix.main(
        ["run", "--out", str(args.out), "--suite", args.suite, *map(str, args.plugs)]
    )


def _requirements(args: argparse.Namespace, _: list[str]) -> int:
    for requirement in load_requirements().values():
        if args.level in (None, requirement.level):
            print(f"{requirement.id} ({requirement.level}): {requirement.text}")
    return 0


def _selfcheck(args: argparse.Namespace, _: list[str]) -> int:
    variants = [str(path) for path in args.variants]
    return selfcheck.main([*variants, "--report-dir", str(args.report_dir)])


if __name__ == "__main__":
    sys.exit(main())
