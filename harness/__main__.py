"""python -m harness run STUDY [--set key=value ...] [--results DIR]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from harness.errors import HarnessError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a study's grid (resumes where it stopped)",
                              description="Run every cell and seed of a study; finished runs are skipped.")
    run.add_argument("study", help="study file, e.g. studies/default.toml")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a study key, e.g. --set search.trials=2 (repeatable)")
    run.add_argument("--results", help="results directory (default: results/<study name>)")
    run.add_argument("--no-report", action="store_true", help="do not write report.md at the end")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        return run_command(args, console)
    except HarnessError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code


def run_command(args: argparse.Namespace, console: Console) -> int:
    from harness.display import Display
    from harness.report import summary_rows, write_report
    from harness.runner import run_study
    from harness.study import load_study

    study = load_study(args.study, args.overrides)
    results = Path(args.results or Path("results") / study.name)
    with Display(console, enabled=not args.quiet) as display:
        run_study(study, args.study, results, display)
    display.summary(summary_rows(results))
    if not args.no_report:
        console.print(f"report: {write_report(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
