"""python -m harness run|worker|collect STUDY [--set key=value ...] [--results DIR] [--storage URL]"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.errors import INTERRUPTED, HarnessError


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
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan (trainings left and an estimate of their time here) and stop; "
                          "nothing is written to the results directory")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--threads", type=int, default=0, metavar="N",
                     help="torch CPU threads (default: all; 1 is faster on cores other jobs share)")
    add_worker_commands(commands)
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        with ctrl_c_stops():
            return {"run": run_command, "worker": worker_command, "collect": collect_command}[args.command](
                args, console)
    except HarnessError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted: every finished run is stored; rerun the same command to resume",
                      highlight=False, soft_wrap=True)
        return 130


@contextlib.contextmanager
def ctrl_c_stops() -> Iterator[None]:
    """Ctrl-C stops the command wherever it lands, and says so in one line.

    Python raises KeyboardInterrupt where the signal lands; landing in a garbage-collection
    callback, it would be printed as an ignored exception and lost. So the flag is set too, and
    every run checks it at each epoch; a KeyboardInterrupt swallowed that way is not printed.
    The handler, the hook and the flag are as before once the command returns. A process
    started with Ctrl-C ignored (nohup, a background job) keeps ignoring it.
    """
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def interrupt(signum, frame) -> None:
        INTERRUPTED.set()
        raise KeyboardInterrupt

    def unraisable(info) -> None:
        if not issubclass(info.exc_type, KeyboardInterrupt):
            previous_hook(info)

    previous_hook = sys.unraisablehook
    INTERRUPTED.clear()
    signal.signal(signal.SIGINT, interrupt)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = previous_hook
        INTERRUPTED.clear()


def run_command(args: argparse.Namespace, console: Console) -> int:
    from harness.run.hub import check_model
    from harness.study import expand, load_study

    study = load_study(args.study, args.overrides)
    for name in dict.fromkeys(c.study.model.name for c in expand(study)):
        check_model(name)  # before torch is imported: a model that cannot be had fails at once

    from harness.run.display import Display
    from harness.report import summary_rows, write_report_and_rows
    from harness.run.runner import run_study
    from harness.store import Results

    results = Results(args.results or Path("results") / study.name)
    set_threads(args.threads)
    with Display(console, enabled=not args.quiet) as display:
        run_study(study, args.study, results, display, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    if args.no_report:
        display.summary(*reversed(summary_rows(results.dir)))
        return 0
    path, split, rows = write_report_and_rows(results.dir)  # one computation for the table and the page
    display.summary(rows, split)
    console.print(f"report: {path}")
    return 0


def set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_worker_commands(commands) -> None:
    worker = commands.add_parser(
        "worker", help="work on a study shared by many workers through Optuna storage",
        description="Pull the next unfinished tuning trial or evaluation seed of the study from shared storage "
                    "until none is left, then write every finished run to the results directory.")
    collect = commands.add_parser("collect", help="write a shared study's finished runs to the results directory",
                                  description="Export every finished run in the storage to runs.jsonl; never trains.")
    for command in (worker, collect):
        command.add_argument("study", help="study file, e.g. studies/default.toml")
        command.add_argument("--storage", help="postgresql://user@host/db, sqlite:///path or journal:///path "
                                               "(default: $HARNESS_STORAGE, else results/<study>/journal.log)")
        command.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="override a study key (every worker must give the same)")
        command.add_argument("--results", help="results directory (default: results/<study name>)")
        command.add_argument("--no-report", action="store_true", help="do not write report.md at the end")
        command.add_argument("--heartbeat", type=int, default=60, metavar="S",
                             help="seconds between heartbeats of a running trial (default 60)")
        command.add_argument("--grace", type=int, default=180, metavar="S",
                             help="seconds without heartbeat before a trial is failed and retried (default 180)")
    worker.add_argument("--processes", type=int, default=0, metavar="N",
                        help="start N worker processes on this machine (one GPU each) and wait for them")
    worker.add_argument("--threads", type=int, default=0, metavar="N", help="torch CPU threads (default: all)")
    worker.add_argument("--quiet", action="store_true", help="no progress display, one line per finished run")


def worker_command(args: argparse.Namespace, console: Console) -> int:
    from harness.run import distributed
    from harness.run import runner
    from harness.run import worker
    from harness.run.display import Display

    study, results, storage, options = shared_study(args)
    if args.processes > 1 and storage.startswith("sqlite"):
        raise HarnessError(f"--storage {storage}: SQLite serves one process only (Optuna's advice); give "
                           "several workers a journal:/// file or a postgresql:// database")
    storage_handle = distributed.open_storage(storage, args.heartbeat, args.grace)  # bad URL: fail before any start
    if args.processes:
        code = worker.launch(child_args(args, results), storage, args.processes)
        return code or report(args, results, console)
    worker.stop_on_sigterm()
    set_threads(args.threads)
    shared = distributed.Shared(study, storage_handle, args.grace)
    with Display(console, enabled=not args.quiet) as display:
        ctx = runner.check_inputs(study, results, display)
        with results.hold(shared=True):
            worker.start(ctx, results, args.study, options)
            abandoned = worker.work(ctx, shared, options)
    with results.hold(shared=True):
        exported = worker.export(shared, results, storage)
    console.print(f"{worker.worker_id()}: done; {exported} new runs in {results.dir}")
    if abandoned:
        console.print(f"[red]error:[/red] given up after {distributed.MAX_ATTEMPTS} workers died on each of: "
                      + ", ".join(f"{s.cell.id} {s.role} {s.index}" for s in abandoned), highlight=False)
        return 1
    return report(args, results, console)


def collect_command(args: argparse.Namespace, console: Console) -> int:
    from harness.run import distributed
    from harness.run import runner
    from harness.run import worker
    from harness.run.display import Display

    study, results, storage, options = shared_study(args)
    shared = distributed.Shared(study, distributed.open_storage(storage, args.heartbeat, args.grace), args.grace)
    ctx = runner.check_inputs(study, results, Display(console, enabled=False)) if results.manifest() is None else None
    with results.hold(shared=True):
        if ctx is not None:  # a machine that ran no worker: manifest and splits first
            worker.start(ctx, results, args.study, options)
        exported = worker.export(shared, results, storage)
    console.print(f"{exported} new runs in {results.dir}")
    return report(args, results, console)


def shared_study(args: argparse.Namespace):
    from harness.run import worker
    from harness.store import Results
    from harness.study import load_study

    study = load_study(args.study, args.overrides)
    results = Results(args.results or Path("results") / study.name)
    storage = args.storage or os.environ.get(worker.STORAGE_ENV) or f"journal://{results.journal.resolve()}"
    poll = max(1.0, min(5.0, args.heartbeat / 2))
    return study, results, storage, worker.Options(storage, args.heartbeat, args.grace, poll)


def child_args(args: argparse.Namespace, results) -> list[str]:
    """The command line of each local worker: this one's, without --processes and --storage."""
    sets = [item for o in args.overrides for item in ("--set", o)]
    return [args.study, "--results", str(results.dir), *sets, "--heartbeat",
            str(args.heartbeat), "--grace", str(args.grace), "--quiet", "--no-report"]


def report(args: argparse.Namespace, results, console: Console) -> int:
    from harness.report import write_report

    if not args.no_report:
        console.print(f"report: {write_report(results.dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
