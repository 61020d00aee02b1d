"""python -m harness.report RESULTS_DIR: the markdown report, a pure function of the store.

It reads ``runs.jsonl`` and ``manifest.json`` and never trains.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.store import MANIFEST, load_runs

AXES = ["data_size", "epochs", "freeze"]


def evaluation_runs(results: Path) -> pd.DataFrame:
    runs = load_runs(results)
    if runs.empty:
        raise HarnessError(f"{results}: no runs.jsonl records (run the study first)")
    return runs[runs["role"] == "eval"].copy()


def cell_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of test metrics per cell, over evaluation seeds that finished ok."""
    ok = runs[runs["status"] == "ok"]
    table = ok.groupby("cell", sort=False).agg(
        data_size=("data_size", "first"), epochs=("epochs", "first"), freeze=("freeze", "first"),
        seeds=("seed", "count"), acc_mean=("test_accuracy", "mean"), acc_sd=("test_accuracy", "std"),
        f1_mean=("test_f1", "mean"), f1_sd=("test_f1", "std"), best_epoch=("best_epoch", "median"),
        lr=("params_lr", "first"), batch_size=("params_batch_size", "first"))
    return table.reset_index()


def summary_rows(results: Path) -> list[dict]:
    table = cell_table(evaluation_runs(results))
    return [{"cell": r.cell, "seeds": r.seeds, "accuracy": f"{r.acc_mean:.3f} ± {_sd(r.acc_sd)}",
             "f1": f"{r.f1_mean:.3f} ± {_sd(r.f1_sd)}", "best_epoch": f"{r.best_epoch:g}",
             "lr": f"{r.lr:.1e}", "batch_size": str(r.batch_size)} for r in table.itertuples()]


def _sd(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.3f}"


def render(results: Path) -> str:
    manifest = json.loads((results / MANIFEST).read_text())
    rows = summary_rows(results)
    lines = [f"# Study `{manifest['study']['name']}`", "",
             f"Study file `{manifest['study_file']}`, commit `{manifest['git_commit']}`, "
             f"device {manifest['device']}.", "",
             "Test metrics of the evaluation seeds, mean ± standard deviation.", "",
             "| cell | seeds | test accuracy | test macro-F1 | best epoch | lr | batch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['cell']} | {r['seeds']} | {r['accuracy']} | {r['f1']} | {r['best_epoch']} | {r['lr']} | "
              f"{r['batch_size']} |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(results: Path) -> Path:
    path = Path(results) / "report.md"
    text = render(Path(results))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report",
                                     description="Write RESULTS_DIR/report.md from the stored runs (never trains).")
    parser.add_argument("results", help="a study's results directory, e.g. results/default")
    args = parser.parse_args(argv)
    try:
        results = Path(args.results)
        if not (results / MANIFEST).exists():
            raise HarnessError(f"{results}: no {MANIFEST}; expected a study's results directory")
        print(write_report(results))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
