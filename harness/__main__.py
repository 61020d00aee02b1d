"""python -m harness run|worker|collect|slurm|export|predict|compare|log ... (python -m harness COMMAND --help)"""

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
    add_model_commands(commands)
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        with ctrl_c_stops():
            return {"run": run_command, "worker": worker_command, "collect": collect_command,
                    "export": export_command, "predict": predict_command, "compare": compare_command,
                    "log": log_command, "slurm": slurm_command}[args.command](
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
    slurm = commands.add_parser(
        "slurm", help="a Slurm job array of N workers against shared storage (needs the slurm extra)",
        description="Submit a Slurm job array (submitit): each of N tasks runs harness worker on its own node "
                    "against one shared Optuna storage (PostgreSQL); then collect every run into the results "
                    "directory and write the report.")
    for command in (worker, collect, slurm):
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
    slurm.add_argument("--nodes", type=int, required=True, metavar="N", help="array tasks, one node each")
    slurm.add_argument("--processes-per-node", dest="processes", type=int, default=1, metavar="K",
                       help="worker processes per node, one GPU each (default 1)")
    slurm.add_argument("--gpus-per-node", type=int, default=0, metavar="G", help="GPUs each task asks for")
    slurm.add_argument("--cpus-per-node", type=int, default=0, metavar="C", help="CPUs each task asks for")
    slurm.add_argument("--mem-gb", type=int, default=0, metavar="GB", help="memory each task asks for")
    slurm.add_argument("--partition", default="", help="the Slurm partition")
    slurm.add_argument("--time", type=int, default=24 * 60, metavar="MIN", help="time limit of each task (default 1440)")
    slurm.add_argument("--local", action="store_true",
                       help="run the tasks as local processes (submitit's local executor) instead of submitting")
    slurm.add_argument("--no-wait", action="store_true",
                       help="submit and return; run harness collect once the tasks have finished")


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


def slurm_command(args: argparse.Namespace, console: Console) -> int:
    from harness.errors import redact
    from harness.run import distributed, slurm

    study, results, storage, _ = shared_study(args)
    if not (args.storage or os.environ.get("HARNESS_STORAGE")):
        raise HarnessError("--storage: expected the database every node shares, postgresql://user@host/db (or "
                           "$HARNESS_STORAGE)")
    slurm.check_storage(storage)
    distributed.open_storage(storage, args.heartbeat, args.grace)  # unreachable: fail before submitting
    request = slurm.Request(args.nodes, args.processes, args.partition, args.time, args.gpus_per_node,
                            args.cpus_per_node, args.mem_gb, args.local)
    jobs = slurm.submit(request, study.name, Path(args.study), args.overrides, storage, results.dir,
                        args.heartbeat, args.grace)
    console.print(f"{len(jobs)} tasks {'started here' if args.local else 'submitted'} (job "
                  f"{jobs[0].job_id.split('_')[0]}); logs in {results.dir / 'slurm' / 'logs'}", highlight=False,
                  soft_wrap=True)
    if args.no_wait:
        sets = " ".join(f"--set '{o}'" for o in args.overrides)
        console.print(f"when they have finished: python -m harness collect {args.study} --storage "
                      f"{redact(storage)} --results {results.dir} {sets}".rstrip(), highlight=False, soft_wrap=True)
        slurm.release(jobs)
        return 0
    failed = slurm.wait(jobs)
    if failed:
        for line in failed:
            console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        return 1
    return collect_command(args, console)


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


def add_model_commands(commands) -> None:
    export = commands.add_parser(
        "export", help="a stored run's model as a transformers directory with a model card",
        description="Train a stored evaluation run again (runs keep no weights), check that its test predictions "
                    "equal the stored ones, and write it as a transformers directory (config, safetensors weights, "
                    "tokenizer) with a model card (README.md).")
    export.add_argument("results", help="a study's results directory, e.g. results/smoke")
    export.add_argument("--out", required=True, help="the directory to write (new or empty)")
    export.add_argument("--cell", help="the cell's id, e.g. 'n=128|ep=3|freeze=5' (default: the report's chosen "
                                       "cell, the cheapest of those validation cannot tell from the best)")
    export.add_argument("--seed", type=int, help="its evaluation seed (default: the cell's first kept seed)")
    export.add_argument("--search", type=int, default=1, metavar="R",
                        help="which of the cell's searches (1, 2, ...; default 1) when it ran several")
    predict = commands.add_parser("predict", help="label texts with an exported model",
                                  description="Label texts with a directory written by harness export: each text's "
                                              "label and the probability of every class, as CSV.")
    predict.add_argument("model", help="a directory written by harness export")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to label (repeatable)")
    source.add_argument("--csv", help="a .csv, .tsv, .parquet or .jsonl file of texts")
    predict.add_argument("--column", default="reviewText", help="the text column of --csv (default reviewText)")
    predict.add_argument("--out", help="write the CSV here (default: standard output)")
    compare = commands.add_parser(
        "compare", help="two results folders on the same test set, cell by cell (B minus A)",
        description="Compare two results folders tested on the same test examples (two models, commits or data "
                    "versions): for each cell both ran, B minus A in test accuracy with simultaneous intervals and "
                    "verdicts; writes compare.md and compare.csv.")
    compare.add_argument("a", help="results folder A, e.g. results/smoke")
    compare.add_argument("b", help="results folder B")
    compare.add_argument("--out", help="where to write compare.md and compare.csv (default: B/compare_<A's name>)")
    log = commands.add_parser(
        "log", help="every stored run as an MLflow run (needs the mlflow extra)",
        description="Log every run of a results folder to MLflow: parameters, per-epoch metrics (step = epoch), "
                    "test metrics, tags for cell, seed, role and status. Runs already logged are skipped.")
    log.add_argument("results", help="a study's results directory, e.g. results/smoke")
    log.add_argument("--to", required=True, metavar="mlflow[:WHERE]",
                     help="mlflow (./mlruns), mlflow:DIR (a local directory) or mlflow:URI (a tracking server, "
                          "http://host:5000, or any MLflow store URI)")
    log.add_argument("--experiment", help="the MLflow experiment (default: the study's name)")


def export_command(args: argparse.Namespace, console: Console) -> int:
    from harness.report import build
    from harness.report import card
    from harness.report.frames import read_stored
    from harness.run.display import Display
    from harness.run.export import check_out, evaluation_record, export, first_kept_seed

    out = Path(args.out)
    check_out(out)  # before the report's numbers are computed
    stored = read_stored(Path(args.results))
    parts = build(stored)
    cells = list(parts.summary["cell"])
    cell = args.cell or card.default_cell(parts)
    if cell is None:
        raise HarnessError(f"{args.results}: no cell has a kept evaluation run to export")
    if cell not in cells:
        raise HarnessError(f"--cell {cell}: not a cell of {args.results} (its cells: {', '.join(cells)})")
    replicate = args.search - 1
    if replicate < 0:
        raise HarnessError(f"--search {args.search}: expected 1 or more")
    seed = first_kept_seed(stored.results, cell, replicate) if args.seed is None else args.seed
    evaluation_record(stored.results, cell, seed, replicate)  # a run it has, and one that counts: before training
    console.print(f"export: {cell} seed {seed}: training it again from its record", highlight=False, soft_wrap=True)
    done = export(stored.results, cell, seed, out, lambda facts: card.render(stored, parts, facts),
                  Display(console, enabled=False), replicate)
    facts = done.facts
    console.print(f"{out}: {facts['split']} predictions of the retrained run equal the stored run's; loaded back, "
                  f"the directory agrees on {facts['agree']} of {facts['n']} {facts['split']} texts", highlight=False,
                  soft_wrap=True)
    return 0


def predict_command(args: argparse.Namespace, console: Console) -> int:
    from harness.run.predict import classify, read_texts

    texts = args.text if args.text is not None else read_texts(args.csv, args.column)
    frame = classify(args.model, texts)
    if args.csv:
        frame.insert(0, "row", range(len(frame)))
    if args.out:
        frame.to_csv(args.out, index=False)
        console.print(f"{len(frame)} texts labelled: {args.out}", highlight=False, soft_wrap=True)
    else:
        frame.to_csv(sys.stdout, index=False)
    return 0


def compare_command(args: argparse.Namespace, console: Console) -> int:
    from harness.report import compare
    from harness.report.frames import read_stored

    a, b = read_stored(Path(args.a)), read_stored(Path(args.b))
    out = Path(args.out) if args.out else Path(args.b) / f"compare_{Path(args.a).resolve().name}"
    path = compare.write(compare.compute(a, b), out)
    console.print(f"comparison: {path}", highlight=False, soft_wrap=True)
    return 0


def log_command(args: argparse.Namespace, console: Console) -> int:
    from harness.report import tracking
    from harness.store import Results

    results = Results(args.results)
    if results.manifest() is None:
        raise HarnessError(f"{args.results}: no manifest.json; expected a study's results directory")
    done = tracking.log(results, args.to, args.experiment)
    console.print(f"{done['added']} runs logged to {done['uri']} (experiment '{done['experiment']}'"
                  + (f"; {done['already']} were there already)" if done["already"] else ")"), highlight=False,
                  soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
