"""python -m harness.report RESULTS_DIR: the markdown report, a pure function of the store.

It reads ``runs.jsonl``, ``manifest.json`` and ``splits.json`` and never trains. It writes
``report.md`` and the same page as ``report.html``, its answers alone as ``findings.md`` (the README
quotes the default study's), the figures under ``figures/``, every table as CSV under ``tables/`` (the
per-example predictions too) and the answers, cells and effects tables as LaTeX. Each section is a
compute step (its module's ``compute``) and a render step (its ``render``); ``build`` runs the
computations once, ``render`` lays out the page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.evidence import from_records
from harness.report import (answers, calibration, cells, effects, gallery, lab, labelling, latex, overfitting,
                            provenance, ran, seeds, tuning, webpage)
from harness.report.format import num
from harness.report.frames import Stored, read_stored, run_frame
from harness.report.parts import Parts

__all__ = ["build", "main", "render", "summary_rows", "write_report", "write_report_and_rows"]

TABLES = "tables"


def build(stored: Stored) -> Parts:
    """Every section's numbers, computed once from the store."""
    ev = from_records(stored.records, stored.splits, stored.axes)
    runs = run_frame(stored)
    metrics = ["accuracy", "macro-F1"] + (["ROC-AUC"] if stored.binary and ev.source == "test" else [])
    sequential = seeds.compute(stored)
    estimates = [effects.estimate(stored, ev, m) for m in metrics]
    estimates[0] = seeds.apply(estimates[0], sequential)  # an adaptive study's verdicts come from its looks
    summary = cells.summary(stored, runs, estimates)
    found_lab = lab.compute(stored, ev, runs, summary)
    comparison = labelling.compute(stored, ev, summary)
    return Parts(evidence=ev, runs=runs, estimates=estimates, summary=summary, baseline=cells.baseline(stored, ev),
                 overfitting=overfitting.compute(stored, ev), curves=overfitting.curves(stored),
                 calibration=calibration.compute(stored, ev), tuning=tuning.compute(stored), lab=found_lab,
                 labelling=comparison, lab_sentences=lab.sentences(stored, found_lab, labelling.sentence(comparison)),
                 sequential=sequential)


def render(stored: Stored, parts: Parts, drawn: dict) -> str:
    study = stored.study
    lines = [f"# Study `{study.name}`: ablation report", ""]
    lines += answers.render(stored, parts)
    lines += ran.render(stored)
    lines += cells.render(stored, parts.summary, parts.baseline)
    lines += effects.render(stored, parts.estimates)
    lines += overfitting.render(stored, parts.overfitting)
    lines += calibration.render(stored, parts.calibration, parts.summary)
    lines += gallery.render(drawn)
    lines += tuning.render(stored, parts.tuning, parts.summary)
    lines += lab.render(stored, parts.lab, labelling.render(parts.labelling))
    lines += seeds.render(stored, parts.sequential)
    lines += provenance.methods(stored, {m.metric: m.note for m in parts.estimates})
    lines += provenance.provenance(stored)
    lines += cells.render_runs(stored, parts.runs)
    return "\n".join(lines).rstrip() + "\n"


def tables(stored: Stored, parts: Parts) -> dict[str, pd.DataFrame]:
    over, tune, cal = parts.overfitting, parts.tuning, parts.calibration
    return {"cells": parts.summary, "answers": effects.frame(parts.estimates, "answers"),
            "interactions": effects.frame(parts.estimates, "interactions"),
            "detail": effects.frame(parts.estimates, "detail"), "runs": parts.runs,
            "diagnostics_runs": over.runs, "diagnostics_cells": over.cells, "collapse": over.collapse,
            "curves": parts.curves, "calibration": cal.cells if cal else pd.DataFrame(),
            "per_class": cal.classes if cal else pd.DataFrame(),
            "confusion": calibration.confusion_frame(cal, stored.class_names),
            "tuning_trials": tune.trials, "expected_max": tune.expected,
            "forecast": pd.concat([f["forecast"].table.assign(curve=f["name"]) for f in parts.lab.forecasts
                                   if not f["forecast"].table.empty] or [pd.DataFrame()], ignore_index=True),
            "score_bands": parts.lab.bands, "labelling": labelling.frame(parts.labelling),
            "duplicates": stored.results.pairs() if stored.results.pairs_path.exists() else pd.DataFrame(),
            "baseline": parts.baseline.get("paired", pd.DataFrame()) if parts.baseline else pd.DataFrame(),
            "last_epoch": over.last.get("table", pd.DataFrame())}


def write_report(results: Path, overrides: list[str] | None = None) -> Path:
    """Write report.md, figures/ and tables/ for a study's results directory; returns the report's path."""
    return write_report_and_rows(results, overrides)[0]


def write_report_and_rows(results: Path, overrides: list[str] | None = None) -> tuple[Path, str, list[dict]]:
    """``write_report``, and the console's table from the same computation: (path, split, rows)."""
    stored = read_stored(Path(results), overrides)
    parts = build(stored)
    drawn = gallery.draw(stored, parts, stored.results.figures)
    folder = stored.results.tables
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables(stored, parts).items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    cells.predictions(stored, parts.evidence).to_csv(folder / "predictions.csv.gz", index=False)
    latex.write(stored, parts, folder)
    _replace(stored.results.findings, "\n".join(answers.findings(stored, parts)).rstrip() + "\n")
    if not parts.labelling.predictions.empty:  # the labelling study's, so that the comparison can be checked
        parts.labelling.predictions.to_csv(folder / "labelling_predictions.csv.gz", index=False)
    path = stored.results.report
    text = render(stored, parts, drawn)
    _replace(path, text)
    webpage.write(text, path.parent, path.with_suffix(".html"), f"Study {stored.study.name}: ablation report")
    return (path, *console_rows(stored, parts))


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole: a reader sees the old file or the new one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def summary_rows(results: Path) -> tuple[str, list[dict]]:
    """(split, rows): the end-of-run table for the console, display strings per cell."""
    stored = read_stored(Path(results))
    return console_rows(stored, build(stored))


def console_rows(stored: Stored, parts: Parts) -> tuple[str, list[dict]]:
    rows = [{"cell": r.cell, "seeds": f"{r.seeds}/{r.runs}",
             "accuracy": f"{num(r.accuracy_mean)} {_interval(r.accuracy_lo, r.accuracy_hi)}",
             "f1": f"{num(r.f1_mean)} {_interval(getattr(r, 'f1_lo', None), getattr(r, 'f1_hi', None))}".strip(),
             "best_epoch": num(r.best_epoch, "g"), "lr": num(r.lr, ".1e"), "batch_size": str(r.batch_size)}
            for r in parts.summary.itertuples()]
    return ("test" if stored.source == "test" else "validation"), rows


def _interval(lo, hi) -> str:
    from harness.report.format import interval

    text = interval(lo, hi)
    return "" if text == "n/a" else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report",
                                     description="Write RESULTS_DIR/report.md, report.html, figures/ and tables/ from the stored "
                                                 "runs (never trains).")
    parser.add_argument("results", help="a study's results directory, e.g. results/default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change a report-only key for this report, e.g. --set analysis.smallest_effect=0.02")
    args = parser.parse_args(argv)
    try:
        print(write_report(Path(args.results), args.overrides))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
