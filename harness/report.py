"""python -m harness.report RESULTS_DIR: the markdown report, a pure function of the store.

It reads ``runs.jsonl``, ``manifest.json`` and ``splits.json`` and never trains. It
writes ``report.md``, the figures under ``figures/`` and every table as CSV under
``tables/``. The page answers the lab's questions in order: the per-cell summary,
the significance of each scientific axis, overfitting and early stopping, figures,
tuning, then provenance. This module computes the tables once and assembles the page;
the data comes from harness.report_frames, each section from its own module
(report_tables, report_significance, report_overfitting, report_figures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from harness import diagnostics, stats
from harness.errors import HarnessError
from harness.report_figures import FIGURES, draw_figures, readings, section_figures
from harness.report_format import num, signed
from harness.report_frames import AXES, Stored, Tables, eval_frame, read_stored, source, summary_table, trained
from harness.report_overfitting import curves, run_diagnostics, section_overfitting
from harness.report_significance import section_significance, significance
from harness.report_tables import section_summary, section_tuning, tuning

# AXES, read_stored and HarnessError are re-exported: callers and tests reach them from here
__all__ = ["AXES", "FIGURES", "TABLES", "HarnessError", "build", "main", "read_stored", "render", "summary_rows",
           "write_report"]

TABLES = "tables"
VERDICTS = ("better", "worse", "no detectable difference", "too few seeds", "not compared")


def summary_rows(results: Path) -> list[dict]:
    """The end-of-run table for the rich display: display strings per cell."""
    stored = read_stored(Path(results))
    table = summary_table(eval_frame(stored), stored)
    return [{"cell": r.cell, "seeds": f"{r.seeds}/{r.runs}",
             "accuracy": f"{num(r.accuracy_mean)} ± {num(r.accuracy_sd)}",
             "f1": f"{num(r.f1_mean)} ± {num(r.f1_sd)}", "best_epoch": num(r.best_epoch, "g"),
             "lr": num(r.lr, ".1e"), "batch_size": str(r.batch_size),
             "split": "test" if source(stored) == "test" else "validation"} for r in table.itertuples()]


def build(stored: Stored) -> Tables:
    evals = eval_frame(stored)
    summary = summary_table(evals, stored)
    runs_diag = run_diagnostics(stored)
    eval_diag = runs_diag[runs_diag["role"] == "eval"]
    cells_diag = diagnostics.cell_summary(eval_diag) if not eval_diag.empty else pd.DataFrame()  # grid order
    trials, expected = tuning(stored)
    sig = significance(evals, summary)
    needed = not sig.empty and bool((sig["n"] >= stats.ASO_MIN_SEEDS).any())
    aso = "not needed" if not needed else "ran" if stats.aso_available() else "unavailable"
    return Tables(stored, source(stored), evals, summary, sig, runs_diag, cells_diag, curves(stored), trials,
                  expected, aso)


def section_answers(t: Tables) -> list[str]:
    """One line per lab question, counted from the significance and late-drop tables."""
    questions = {"data_size": "Did more data help?", "freeze": "Did unfreezing help?",
                 "epochs": "Did more epochs help?"}
    lines = ["## Answers at a glance", ""]
    for axis, question in questions.items():
        rows = t.significance[t.significance["axis"] == axis] if not t.significance.empty else pd.DataFrame()
        if rows.empty:
            lines.append(f"- **{question}** Not tested: the stored runs cover one level of {axis}.")
            continue
        counts = rows["verdict"].map(_category).value_counts()
        said = ", ".join(f"{c} in {counts[c]}" for c in VERDICTS if c in counts)
        single = int((rows["test"] == "McNemar").sum())
        single = f" ({single} on single models by McNemar)" if single else ""
        lines.append(f"- **{question}** {len(rows)} comparison(s) of adjacent levels, other axes fixed: {said}"
                     f"{single}. Mean change {signed(rows['diff'].mean())} {t.src} accuracy.")
    late = t.runs_diag[(t.runs_diag["role"] == "eval") & t.runs_diag["flag"].isna()]
    dropped = late[late.get("verdict", pd.Series(dtype=str)).isin(["real drop", "within noise"])]
    real = int((dropped["verdict"] == "real drop").sum())
    lines += [f"- **Was a late peak real?** Of {len(late)} kept evaluation runs, {len(dropped)} peaked in validation "
              f"accuracy before their last epoch; the drop after the peak was larger than noise (McNemar "
              f"p < {stats.ALPHA}) in {real}.", ""]
    return lines



def _category(verdict: str) -> str:
    return next(c for c in VERDICTS if verdict.startswith(c))


def section_provenance(t: Tables) -> list[str]:
    m, study, records = t.stored.manifest, t.stored.manifest["study"], t.stored.records
    ran = trained(records)
    seconds = pd.Series([r.get("seconds") or 0.0 for r in ran])
    tune = sum(r.get("seconds") or 0.0 for r in ran if r["role"] == "tune")
    reused = len(records) - len(ran)
    finished = sorted(r["finished"] for r in records if r.get("finished"))
    devices = sorted({r.get("device") for r in records if r.get("device")})
    packages = ", ".join(f"{k} {v}" for k, v in sorted(m.get("packages", {}).items()))
    lines = ["## 6. Provenance", "",
             f"- Study file: `{m.get('study_file')}` (study `{study['name']}`, fingerprint `{m.get('fingerprint')}`)",
             f"- Git commit: `{m.get('git_commit')}`",
             f"- Python {m.get('python')}; packages: {packages}",
             f"- Device: {m.get('device')}" + (f"; runs on {', '.join(devices)}" if devices else ""),
             f"- Dates: store created {m.get('created')}, {len(m.get('sessions', []))} session(s); runs finished "
             f"{finished[0] if finished else 'n/a'} to {finished[-1] if finished else 'n/a'}",
             f"- Compute: {len(records)} runs, {seconds.sum() / 60:.1f} min of training in all ({tune / 60:.1f} "
             f"min tuning, {(seconds.sum() - tune) / 60:.1f} min evaluation)"
             + (f"; {reused} evaluation run(s) were their seed's best tuning trial (same seed, split, lr and "
                "batch size), scored on the test set held back from tuning, not trained again" if reused else ""),
             f"- Selection protocol: {protocol(t.stored)}",
             f"- Report: ASO (deepsig) {t.aso}; figures in "
             f"`{FIGURES}/`, tables as CSV in `{TABLES}/`.", ""]
    return lines


def protocol(stored: Stored) -> str:
    """What was tuned on which split and seeds, in one sentence, from the resolved study."""
    study = stored.manifest["study"]
    search, train, seeds = study.get("search", {}), study.get("train", {}), study.get("seeds", {})
    splits = stored.splits
    sizes = (f" (train pool {splits.get('train_pool')}, validation {len(splits.get('val_labels', ''))}, test "
             f"{len(splits.get('test_labels', ''))} examples)") if splits else ""
    if search.get("trials"):
        tuned = (f"learning rate (log-uniform in {search.get('lr')}) and batch size ({search.get('batch_size')}) "
                 f"tuned per cell by Optuna ({search.get('sampler')} sampler, {search.get('pruner')} pruner, "
                 f"{search['trials']} trials) on the validation split with tuning seed(s) {seeds.get('tune')}, "
                 f"objective {train.get('metric')}")
    else:
        tuned = f"no tuning: fixed lr {search.get('fixed_lr')} and batch size {search.get('fixed_batch_size')}"
    return (f"{tuned}; the chosen parameters rerun on evaluation seeds {seeds.get('evaluate')}, each run "
            f"restoring its best epoch by {train.get('metric')} (patience {train.get('patience')}) and tested "
            f"once on the test split{sizes}; tuning never sees the test split.")


def render(t: Tables, drawn: dict[str, Path]) -> str:
    study = t.stored.manifest["study"]
    lines = [f"# Study `{study['name']}`: ablation report", "", study.get("description", ""), ""]
    lines += section_answers(t) + section_summary(t) + section_significance(t) + section_overfitting(t)
    lines += section_figures(t, drawn, readings(t)) + section_tuning(t) + section_provenance(t)
    return "\n".join(lines).rstrip() + "\n"


def write_tables(t: Tables, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frames = {"summary": t.summary, "runs": t.evals.drop(columns=["correct"]), "significance": t.significance,
              "diagnostics_runs": t.runs_diag, "diagnostics_cells": t.cells_diag, "curves": t.curves,
              "tuning_trials": t.trials, "expected_max": t.expected}
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)


def write_report(results: Path) -> Path:
    """Write report.md, figures/ and tables/ for a study's results directory; returns the report's path."""
    results = Path(results)
    tables = build(read_stored(results))
    drawn = draw_figures(tables, results / FIGURES)
    write_tables(tables, results / TABLES)
    path = results / "report.md"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(tables, drawn))
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report",
                                     description="Write RESULTS_DIR/report.md, figures/ and tables/ from the stored "
                                                 "runs (never trains).")
    parser.add_argument("results", help="a study's results directory, e.g. results/default")
    args = parser.parse_args(argv)
    try:
        print(write_report(Path(args.results)))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
