"""python -m harness.report RESULTS_DIR: the markdown report, a pure function of the store.

It reads ``runs.jsonl``, ``manifest.json`` and ``splits.json`` and never trains. It
writes ``report.md``, the figures under ``figures/`` and every table as CSV under
``tables/``. The page answers the lab's questions in order: the per-cell summary,
the significance of each scientific axis, overfitting and early stopping, tuning,
then provenance. The statistics live in harness.stats, the curve diagnostics in
harness.diagnostics, the drawing in harness.figures; this module pairs runs across
the grid and lays out the page. Longer than the style's 300 lines because the page
itself is long; every function still does one thing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness import diagnostics, stats
from harness.errors import HarnessError
from harness.store import MANIFEST, read_records

AXES = ["data_size", "epochs", "freeze"]
SPLITS = "splits.json"
FIGURES = "figures"
TABLES = "tables"
ORDER = {  # the grid's own order: more data, more epochs, fewer frozen blocks to the right
    "data_size": lambda v: math.inf if v == "all" else float(v),
    "epochs": float,
    "freeze": lambda v: -math.inf if v == "all" else -float(v),
}


@dataclass(frozen=True)
class Stored:
    """What the report reads: the manifest, the fixed splits and every record."""

    manifest: dict
    splits: dict
    records: list[dict]

    @property
    def class_names(self) -> list[str]:
        return self.splits.get("class_names") or self.manifest["study"]["data"].get("class_names") or []

    @property
    def metric(self) -> str:
        return self.manifest["study"].get("train", {}).get("metric", "val_accuracy")


def read_stored(results: Path) -> Stored:
    path = results / MANIFEST
    if not path.exists():
        raise HarnessError(f"{results}: no {MANIFEST}; expected a study's results directory")
    records = read_records(results)
    if not records:
        raise HarnessError(f"{results}: no runs.jsonl records (run the study first)")
    splits = json.loads((results / SPLITS).read_text()) if (results / SPLITS).exists() else {}
    records = sorted(records, key=cell_key)  # stable: store order within a cell
    return Stored(json.loads(path.read_text()), splits, records)


def label(cell: str) -> str:
    """A cell id without its '|' separators, which would break a markdown table."""
    return cell.replace("|", " ")


def cell_key(row) -> tuple:
    return tuple(ORDER[a](row[a]) for a in ("freeze", "data_size", "epochs"))


# ---------------------------------------------------------------- per-run and per-cell tables

def source(stored: Stored) -> str:
    """'test' when evaluation runs were tested; otherwise 'val' (the metric at the restored epoch)."""
    return "test" if any((r.get("test") or {}).get("accuracy") is not None
                         for r in stored.records if r["role"] == "eval") else "val"


def eval_frame(stored: Stored) -> pd.DataFrame:
    """One row per evaluation run: its flag, metrics with Wilson interval, cost and chosen parameters."""
    src, binary = source(stored), len(stored.class_names) == 2
    labels = stored.splits.get("test_labels", "")
    if not any(r["role"] == "eval" for r in stored.records):
        raise HarnessError("the store has tuning trials but no evaluation run yet: nothing to report")
    rows = []
    for r in (r for r in stored.records if r["role"] == "eval"):
        row = {a: r[a] for a in ("cell", *AXES, "freeze_depth", "seed", "status")} | {
            "flag": diagnostics.degenerate(r), "train_size": r.get("train_size"), "best_epoch": r.get("best_epoch"),
            "stopped_epoch": r.get("stopped_epoch"), "trainable_params": r.get("trainable_params"),
            "seconds": r.get("seconds"), "lr": r["params"].get("lr"), "batch_size": r["params"].get("batch_size")}
        row |= _scores(r, src, labels, binary)
        rows.append(row)
    return pd.DataFrame(rows)


def _scores(record: dict, src: str, labels: str, binary: bool) -> dict:
    """Accuracy, F1, ROC-AUC (binary), per-example correctness and Wilson interval of one run."""
    out = {"accuracy": math.nan, "f1": math.nan, "auc": math.nan, "n": 0, "correct": None}
    if src == "test":
        test = record.get("test") or {}
        if test.get("accuracy") is None:
            return out
        pred = test.get("pred", "")
        out |= {"accuracy": test["accuracy"], "f1": test["f1"], "n": record.get("test_size") or len(pred)}
        if pred and len(pred) == len(labels):
            out["correct"] = np.frombuffer(pred.encode(), np.uint8) == np.frombuffer(labels.encode(), np.uint8)
            if binary and test.get("prob"):
                out["auc"] = stats.roc_auc([int(c) for c in labels], test["prob"])
    else:
        val = record.get("val") or {}
        if val.get("accuracy") is None:
            return out
        best = next((h for h in record.get("history") or [] if h["epoch"] == record.get("best_epoch")), {})
        out |= {"accuracy": val["accuracy"], "f1": val.get("f1", math.nan), "n": record.get("val_size") or 0}
        if best.get("val_correct"):
            out["correct"] = stats.bits(best["val_correct"])
    out["wilson_lo"], out["wilson_hi"] = stats.wilson_interval(round(out["accuracy"] * out["n"]), out["n"])
    return out


def summary_table(evals: pd.DataFrame, stored: Stored) -> pd.DataFrame:
    """Per cell: seeds kept and flagged, mean, sd and 95% t-interval of each metric, cost, parameters."""
    seconds = pd.DataFrame([{"cell": r["cell"], "seconds": r.get("seconds") or 0.0} for r in stored.records])
    total = seconds.groupby("cell")["seconds"].sum()
    rows = []
    for cell, group in evals.groupby("cell", sort=False):
        good = group[group["flag"].isna() & group["accuracy"].notna()]
        first = group.iloc[0]
        row = {"cell": cell, "label": label(cell), **{a: first[a] for a in AXES}, "runs": len(group),
               "seeds": len(good), "flagged": _flags(group), "best_epoch": _median(good["best_epoch"]),
               "trainable_params": first["trainable_params"], "seconds_per_run": group["seconds"].mean(),
               "seconds_total": total.get(cell, 0.0), "lr": first["lr"], "batch_size": first["batch_size"]}
        for m in ("accuracy", "f1", "auc"):
            row |= dict(zip((f"{m}_mean", f"{m}_sd", f"{m}_lo", f"{m}_hi"), stats.mean_ci(good[m].dropna())))
        rows.append(row)
    return pd.DataFrame(rows)


def _flags(group: pd.DataFrame) -> str:
    counts = group["flag"].value_counts()
    return ", ".join(f"{counts[k]} {k}" for k in diagnostics.EXCLUDED if k in counts) or "none"


def _median(values: pd.Series) -> float:
    values = values.dropna().astype(float)
    return float(values.median()) if len(values) else math.nan


def summary_rows(results: Path) -> list[dict]:
    """The end-of-run table for the rich display: display strings per cell."""
    stored = read_stored(Path(results))
    table = summary_table(eval_frame(stored), stored)
    return [{"cell": r.cell, "seeds": f"{r.seeds}/{r.runs}",
             "accuracy": f"{_f(r.accuracy_mean)} ± {_f(r.accuracy_sd)}",
             "f1": f"{_f(r.f1_mean)} ± {_f(r.f1_sd)}", "best_epoch": _f(r.best_epoch, "g"),
             "lr": _f(r.lr, ".1e"), "batch_size": str(r.batch_size)} for r in table.itertuples()]


# ---------------------------------------------------------------- significance over the grid

def significance(evals: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Adjacent levels of each axis compared with the other two axes fixed, seeds paired; Holm over all."""
    good = evals[evals["flag"].isna() & evals["accuracy"].notna()]
    pooled = stats.pooled_sd(summary["accuracy_sd"], summary["seeds"])
    rows = []
    for axis in AXES:
        others = [a for a in AXES if a != axis]
        levels = sorted(evals[axis].unique(), key=ORDER[axis])
        contexts = sorted({tuple(c) for c in evals[others].itertuples(index=False)},
                          key=lambda c: tuple(ORDER[a](v) for a, v in zip(others, c)))
        for context in contexts:
            here = good[np.logical_and.reduce([good[a] == v for a, v in zip(others, context)])]
            cells = set(evals[np.logical_and.reduce([evals[a] == v for a, v in zip(others, context)])][axis])
            for lo, hi in zip(levels, levels[1:]):
                if lo in cells and hi in cells:
                    rows.append(_compare(here, axis, lo, hi, dict(zip(others, context))))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = stats.holm(table["p"])
    table["wilcoxon_holm"] = stats.holm(table["wilcoxon_p"])
    table["aso_eps"] = _aso(table)
    table["verdict"] = [stats.verdict(r) for r in table.to_dict("records")]
    table["seeds_needed"] = [_needed(r, pooled) for r in table.to_dict("records")]
    return table.drop(columns=["_a", "_b"])


def _compare(runs: pd.DataFrame, axis: str, lo, hi, context: dict) -> dict:
    """Level `lo` against `hi` of `axis` within one context, on the seeds kept in both cells."""
    pairs = runs[runs[axis] == lo].merge(runs[runs[axis] == hi], on="seed", suffixes=("_a", "_b"))
    row = {"axis": axis, "context": " ".join(f"{_short(a)}={v}" for a, v in context.items()), "level_a": lo,
           "level_b": hi, "_a": pairs["accuracy_a"].to_numpy(), "_b": pairs["accuracy_b"].to_numpy()}
    correct = (pairs["correct_a"].iloc[0], pairs["correct_b"].iloc[0]) if len(pairs) == 1 else (None, None)
    return row | stats.compare_pair(row["_a"], row["_b"], *correct)


def _short(axis: str) -> str:
    return {"data_size": "n", "epochs": "ep", "freeze": "freeze"}[axis]


def _aso(table: pd.DataFrame) -> list[float]:
    """ASO eps_min that the observed winner dominates, where both sides have enough seeds."""
    enough = [len(a) >= stats.ASO_MIN_SEEDS for a in table["_a"]]
    if not any(enough) or not stats.aso_available():  # deepsig loads only when a row can use it
        return [math.nan] * len(table)
    out = []
    for (a, b, diff), ok in zip(table[["_a", "_b", "diff"]].itertuples(index=False), enough):
        winner, loser = (b, a) if diff >= 0 else (a, b)
        out.append(stats.aso_eps(winner, loser, num_comparisons=sum(enough)) if ok else math.nan)
    return out


def _needed(row: dict, pooled: float) -> float:
    """Seeds for 80% power at the observed difference; one pair borrows the study's pooled seed sd."""
    if not (row["verdict"].startswith("too few") or row["test"] == "McNemar"):
        return math.nan
    dz = row["dz"] if row["n"] >= 2 else row["diff"] / (math.sqrt(2) * pooled) if pooled > 0 else math.nan
    needed = stats.seeds_needed(dz)
    return math.nan if needed is None else needed


# ---------------------------------------------------------------- curves, tuning

def run_diagnostics(stored: Stored) -> pd.DataFrame:
    return pd.DataFrame([diagnostics.run_row(r, stored.metric) for r in stored.records])


def curves(stored: Stored, role: str = "eval") -> pd.DataFrame:
    """Long form: one row per (run, epoch) with validation metrics and the train-validation gap."""
    flagged = {(r["cell"], r["seed"]) for r in stored.records if r["role"] == role and diagnostics.degenerate(r)}
    rows = [{"cell": r["cell"], "label": label(r["cell"]), "seed": r["seed"], **h, **g}
            for r in stored.records if r["role"] == role and (r["cell"], r["seed"]) not in flagged
            for h, g in zip(diagnostics.validated(r.get("history") or []), diagnostics.gaps(r.get("history") or []))]
    return pd.DataFrame(rows).drop(columns=["val_correct"], errors="ignore")


def tuning(stored: Stored) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, expected-max curve): every tuning trial, and E[best of k trials] per cell (Dodge et al.)."""
    trials = pd.DataFrame([{"cell": r["cell"], "label": label(r["cell"]), "trial": r["trial"], "status": r["status"],
                            "lr": r["params"]["lr"], "batch_size": r["params"]["batch_size"],
                            "objective": r.get("objective"), "seconds": r.get("seconds")}
                           for r in stored.records if r["role"] == "tune"])
    if trials.empty:
        return trials, pd.DataFrame()
    done = trials.dropna(subset=["objective"])
    curve = [{"cell": cell, "label": label(cell), "trials": k, "expected": stats.expected_max(g["objective"], k)}
             for cell, g in done.groupby("cell", sort=False) for k in range(1, len(g) + 1)]
    return trials, pd.DataFrame(curve)


def _f(value, fmt: str = ".3f") -> str:
    """A number for the page; NaN and None read 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def _p(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else "<0.001" if value < 0.001 else f"{value:.3f}"


def _pm(mean: float, sd: float, lo: float, hi: float) -> str:
    """mean ± sd [95% CI]; a single seed has neither."""
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± n/a" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f} [{lo:.3f}, {hi:.3f}]"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub markdown table; the first column left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


# ---------------------------------------------------------------- the page

@dataclass
class Tables:
    """Everything the page prints, computed once from the store."""

    stored: Stored
    src: str
    evals: pd.DataFrame
    summary: pd.DataFrame
    significance: pd.DataFrame
    runs_diag: pd.DataFrame
    cells_diag: pd.DataFrame
    curves: pd.DataFrame
    trials: pd.DataFrame
    expected: pd.DataFrame
    aso: str  # 'ran', 'not needed' (no pair of cells with enough seeds) or 'unavailable' (no deepsig)


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
                     f"{single}. Mean change {_signed(rows['diff'].mean())} {t.src} accuracy.")
    late = t.runs_diag[(t.runs_diag["role"] == "eval") & t.runs_diag["flag"].isna()]
    dropped = late[late.get("verdict", pd.Series(dtype=str)).isin(["real drop", "within noise"])]
    real = int((dropped["verdict"] == "real drop").sum())
    lines += [f"- **Was a late peak real?** Of {len(late)} kept evaluation runs, {len(dropped)} peaked in validation "
              f"accuracy before their last epoch; the drop after the peak was larger than noise (McNemar "
              f"p < {stats.ALPHA}) in {real}.", ""]
    return lines


VERDICTS = ("better", "worse", "no detectable difference", "too few seeds", "not compared")


def _category(verdict: str) -> str:
    return next(c for c in VERDICTS if verdict.startswith(c))


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def section_summary(t: Tables) -> list[str]:
    binary = len(t.stored.class_names) == 2
    where = "test" if t.src == "test" else "validation (no test split: the restored epoch was chosen on it, " \
                                            "so these are optimistic)"
    lines = ["## 1. Summary by cell", "",
             f"Metrics on the {where} set over evaluation seeds: mean ± sd [95% t-interval]. Runs that failed, "
             "diverged or collapsed to one class are counted under *excluded* and kept out of every mean. "
             "A single kept seed has no sd (n/a). Time in seconds: per evaluation run, and the cell's total "
             "including tuning.", "",
             f"{len(t.summary)} cells, named in the tables without the bars of their stored ids: "
             + ", ".join(f"`{c}`" for c in t.summary["cell"]) + ".", ""]
    if not binary:
        lines += ["ROC-AUC is reported for binary tasks only; this one has "
                  f"{len(t.stored.class_names)} classes.", ""]
    header = ["cell", "seeds", "excluded", "accuracy", "macro-F1"] + (["ROC-AUC"] if binary else []) + \
        ["best epoch", "trainable params", "s/run", "cell s", "lr", "batch"]
    rows = [[r.label, f"{r.seeds}/{r.runs}", r.flagged, _pm(r.accuracy_mean, r.accuracy_sd, r.accuracy_lo,
             r.accuracy_hi), _pm(r.f1_mean, r.f1_sd, r.f1_lo, r.f1_hi)]
            + ([_pm(r.auc_mean, r.auc_sd, r.auc_lo, r.auc_hi)] if binary else [])
            + [_f(r.best_epoch, "g"), f"{int(r.trainable_params):,}" if pd.notna(r.trainable_params) else "n/a",
               _f(r.seconds_per_run, ".1f"), _f(r.seconds_total, ".1f"), _f(r.lr, ".2e"), str(r.batch_size)]
            for r in t.summary.itertuples()]
    lines += md_table(header, rows)
    lines += ["### Individual evaluation runs", "",
              "Accuracy of each run with its Wilson 95% interval on the evaluated examples.", ""]
    rows = [[label(r.cell), str(r.seed), r.flag if isinstance(r.flag, str) else r.status, _wilson(r), _f(r.f1)]
            + ([_f(r.auc)] if binary else []) + [_f(r.best_epoch, "g"), _f(r.stopped_epoch, "g")]
            for r in t.evals.itertuples()]
    lines += md_table(["cell", "seed", "status", "accuracy [Wilson 95%]", "macro-F1"]
                      + (["ROC-AUC"] if binary else []) + ["best epoch", "stopped"], rows)
    flagged = t.evals[t.evals["flag"].notna()]
    if len(flagged):
        lines += ["Excluded from the means: " + "; ".join(f"{label(r.cell)} seed {r.seed} ({r.flag})"
                                                          for r in flagged.itertuples()) + ".", ""]
    return lines


def _wilson(r) -> str:
    if math.isnan(r.accuracy):
        return "n/a"
    return f"{r.accuracy:.3f} [{r.wilson_lo:.3f}, {r.wilson_hi:.3f}] of {r.n}"


def section_significance(t: Tables) -> list[str]:
    sig = t.significance
    lines = ["## 2. Significance by axis", ""]
    if sig.empty:
        return lines + ["No axis has two levels: nothing to compare.", ""]
    aso = (f"ASO (Dror et al. 2019, deepsig, {stats.ASO_ITERATIONS} bootstrap iterations, seed 0, Bonferroni "
           f"inside) runs where both cells have at least {stats.ASO_MIN_SEEDS} paired seeds; ε_min is for the "
           f"observed winner, below {stats.ASO_THRESHOLD} it almost stochastically dominates"
           + ("" if t.aso == "ran" else f" (no comparison here has {stats.ASO_MIN_SEEDS} pairs)")
           if t.aso != "unavailable" else "ASO unavailable: deepsig could not be imported, so that column is n/a")
    lines += [f"Each row compares two adjacent levels of one axis (A → B: more data, more epochs, fewer frozen "
              f"blocks) with the other two axes fixed, on {t.src} accuracy, paired by evaluation seed; excluded "
              f"runs drop their pair. Δ = B − A with its 95% t-interval. Primary test: paired t-test; with a "
              f"single pair, the exact McNemar test of the two models on the same examples (it ignores seed "
              f"variance). Holm-Bonferroni corrects across all {int(sig['p'].notna().sum())} primary tests of the "
              f"table and, separately, the Wilcoxon signed-rank tests (shown only where n pairs can reach "
              f"p < {stats.ALPHA}, i.e. n ≥ 6). Effect size: Cohen's d_z = mean(Δ) / sd(Δ). {aso}. The verdict "
              f"is for B against A at α = {stats.ALPHA} after correction; when the test had under "
              f"{stats.POWER:.0%} power at the observed effect it says *too few seeds* and the last column "
              f"estimates the seeds a paired t-test would need for {stats.POWER:.0%} power at that effect (a "
              f"single pair borrows the study's pooled seed sd; a planning figure, not evidence).", ""]
    rows = [[r.axis, r.context, f"{r.level_a} → {r.level_b}", str(r.n), _f(r.mean_a), _f(r.mean_b),
             f"{_signed(r.diff)} [{_f(r.diff_lo)}, {_f(r.diff_hi)}]", r.test, _p(r.p), _p(r.p_holm),
             f"{_p(r.wilcoxon_p)} ({_p(r.wilcoxon_holm)})", _f(r.dz, ".2f"), _f(r.aso_eps, ".2f"), r.verdict,
             _f(r.seeds_needed, ".0f")] for r in sig.itertuples()]
    lines += md_table(["axis", "with", "A → B", "pairs", "mean A", "mean B", "Δ [95% CI]", "test", "p",
                       "p (Holm)", "Wilcoxon p (Holm)", "d_z", "ASO ε_min", "verdict", "seeds needed"], rows)
    return lines


def section_overfitting(t: Tables) -> list[str]:
    lines = ["## 3. Overfitting and early stopping", ""]
    diag, cells = t.runs_diag[t.runs_diag["role"] == "eval"], t.cells_diag
    if cells.empty or "peak_epoch" not in diag:
        return lines + ["No evaluation run logged a validation curve.", ""]
    val_size = int(next((r.get("val_size") for r in t.stored.records if r.get("val_size")), 0))
    acc = float(np.nanmedian(diag["peak_acc"].astype(float)))
    se = stats.proportion_se(acc, val_size)
    lines += [f"The validation set has {val_size} examples: near accuracy {acc:.2f} one binomial standard "
              f"error is {se:.3f} ({se * val_size:.0f} examples), so a peak-to-last drop counts as real only "
              f"when the exact McNemar test on the two epochs' per-example predictions gives p < {stats.ALPHA}. "
              "Training accuracy is a running figure over each epoch with dropout on. Excluded runs are "
              "counted per cell and kept out of the medians and means.", ""]
    rows = [[label(r.cell), str(r.runs), _excluded(r), _f(r.peak_epoch, "g"), _f(r.min_loss_epoch, "g"),
             _signed(r.drop), f"{r.real_drops}", _gap_by_epoch(t.curves, r.cell)] for r in cells.itertuples()]
    lines += md_table(["cell", "runs", "excluded", "peak val-acc epoch (median)", "min val-loss epoch (median)",
                       "peak − last (mean)", "real drops", "train − val acc by epoch (mean)"], rows)
    lines += ["### Per run", ""]
    ok = diag[diag["flag"].isna() & diag["peak_epoch"].notna()]
    rows = [[label(r.cell), str(r.seed), _f(r.peak_epoch, "g"), _f(r.min_loss_epoch, "g"), _f(r.best_epoch, "g"),
             _f(r.last_epoch, "g"), f"{_f(r.peak_acc)} → {_f(r.last_acc)}",
             f"{_signed(r.drop)} ({int(r.drop_examples):+d})", _f(r.se), _p(r.mcnemar_p), r.verdict]
            for r in ok.itertuples()]
    lines += md_table(["cell", "seed", "peak epoch", "min-loss epoch", "restored", "last", "val acc peak → last",
                       "drop (examples)", "1 SE at peak", "McNemar p", "verdict"], rows)
    lines += _replay_lines(t, cells)
    return lines


def _gap_by_epoch(curves: pd.DataFrame, cell: str) -> str:
    if curves.empty or cell not in set(curves["cell"]):
        return "n/a"
    gap = curves[curves["cell"] == cell].groupby("epoch")["acc_gap"].mean()
    return " / ".join(f"{g:+.2f}" for g in gap)


def _excluded(r) -> str:
    return ", ".join(f"{getattr(r, k)} {k}" for k in diagnostics.EXCLUDED if getattr(r, k)) or "none"


def _replay_lines(t: Tables, cells: pd.DataFrame) -> list[str]:
    train = t.stored.manifest["study"].get("train", {})
    lines = ["### Early stopping replayed", "",
             f"The training loop stops after `patience` epochs without improving {t.stored.metric} (this study: "
             f"patience {train.get('patience', 'n/a')}) and restores the best epoch. Replayed on the logged "
             "curves with patience 1, 3 and 5: the mean stopping epoch, in how many runs the rule fired before the "
             "curve ended (a curve already cut by the study's own patience cannot show a later stop), and the "
             "mean validation accuracy given up against the best epoch of the whole logged curve.", ""]
    ps = diagnostics.PATIENCES
    rows = [[label(r.cell)] + [f"{_f(getattr(r, f'p{p}_stop'), '.1f')} ({getattr(r, f'p{p}_fired')}) "
                               f"{_signed(getattr(r, f'p{p}_cost'))}" for p in ps] for r in cells.itertuples()]
    return lines + md_table(["cell"] + [f"patience {p}: stop (fired) cost" for p in ps], rows)


def draw_figures(t: Tables, folder: Path) -> dict[str, Path]:
    """Draw every figure the data allows; returns name -> path of those drawn."""
    from harness import figures  # seaborn and matplotlib load only when a page is written

    good = t.evals[t.evals["flag"].isna() & t.evals["accuracy"].notna()].assign(
        freeze_label=lambda f: f["freeze"].astype(str), size_label=lambda f: f["data_size"].astype(str))
    order = [str(v) for v in sorted(good["freeze"].unique(), key=ORDER["freeze"])]
    trials = t.trials.dropna(subset=["objective"]) if not t.trials.empty else t.trials
    return figures.draw_all(folder, t.curves, good, heat_table(t.summary), order, trials, t.expected)


def heat_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy with rows (data size, epochs) and columns freezing depth, in grid order."""
    frame = summary.assign(row=[f"n={r.data_size}, ep={r.epochs}" for r in summary.itertuples()],
                           col=summary["freeze"].astype(str))
    table = frame.pivot(index="row", columns="col", values="accuracy_mean")
    rows = sorted(frame["row"].unique(), key=lambda s: _row_key(frame, s))
    cols = [str(v) for v in sorted(summary["freeze"].unique(), key=ORDER["freeze"])]
    return table.loc[rows, cols]


def _row_key(frame: pd.DataFrame, row: str) -> tuple:
    first = frame[frame["row"] == row].iloc[0]
    return ORDER["data_size"](first["data_size"]), ORDER["epochs"](first["epochs"])


def readings(t: Tables) -> dict[str, str]:
    """One line per figure saying what it shows, computed from the same tables the page prints."""
    out = {}
    if not t.curves.empty:
        mean = t.curves.groupby(["label", "epoch"], sort=False)["val_accuracy"].mean().reset_index()
        peaks = mean.loc[mean.groupby("label", sort=False)["val_accuracy"].idxmax()]
        last = mean.groupby("label", sort=False)["epoch"].max()
        early = [p.label for p in peaks.itertuples() if p.epoch < last[p.label]]
        out["learning_curves"] = (f"Validation accuracy by epoch (band ±1 sd over seeds, star at the peak of the "
                                  f"mean): the mean peaks before the last epoch in {len(early)} of {len(peaks)} "
                                  f"cells" + (f" ({', '.join(early)})." if early else "."))
        gap = t.curves.groupby("label")["epoch"].transform("max") == t.curves["epoch"]
        by_cell = t.curves[gap].groupby("label")["acc_gap"].mean()
        out["gaps"] = (f"Train minus validation accuracy by epoch: at the last epoch the mean gap ranges from "
                       f"{by_cell.min():+.3f} ({by_cell.idxmin()}) to {by_cell.max():+.3f} ({by_cell.idxmax()}).")
    sig = t.significance
    for axis, name, what in (("data_size", "accuracy_vs_size", "training examples (log scale)"),
                             ("freeze", "accuracy_vs_freeze", "frozen blocks")):
        rows = sig[sig["axis"] == axis] if not sig.empty else sig
        change = (f"; the adjacent-level step changes it by {_signed(rows['diff'].mean())} on average"
                  if len(rows) else "; one level only")
        out[name] = f"{t.src.capitalize()} accuracy against {what} (95% CI over seeds){change}."
    if not t.summary.empty and t.summary["accuracy_mean"].notna().any():
        s = t.summary.dropna(subset=["accuracy_mean"])
        best, worst = s.loc[s["accuracy_mean"].idxmax()], s.loc[s["accuracy_mean"].idxmin()]
        out["heatmap"] = (f"Mean {t.src} accuracy of every cell: best {best['label']} ({best['accuracy_mean']:.3f}), "
                          f"worst {worst['label']} ({worst['accuracy_mean']:.3f}).")
    if not t.expected.empty:
        top = t.expected.groupby("label")["expected"].agg(["first", "last"])
        out["optuna"] = (f"Tuning objective against learning rate and batch size, every completed trial; best "
                         f"per cell from {top['last'].min():.3f} to {top['last'].max():.3f}.")
        out["expected_max"] = (f"Expected best validation objective after k trials (Dodge et al. 2019): one trial "
                               f"gives on average {(top['last'] - top['first']).mean():.3f} less than all of them, "
                               f"a measure of how much the search mattered.")
    return out


def section_figures(t: Tables, drawn: dict[str, Path], read: dict[str, str]) -> list[str]:
    lines = ["## 4. Figures", ""]
    titles = {"learning_curves": "Validation learning curves", "accuracy_vs_size": "Accuracy against data size",
              "accuracy_vs_freeze": "Accuracy against freezing depth", "heatmap": "The grid",
              "gaps": "Train-validation gap", "optuna": "Learning rate and batch size against the objective",
              "expected_max": "Expected validation performance against trials"}
    for name, title in titles.items():
        if name in drawn:
            lines += [f"![{title}]({FIGURES}/{drawn[name].name})", "", f"*{title}.* {read.get(name, '')}", ""]
        else:
            lines += [f"*{title}:* not drawn, the store has no data for it.", ""]
    return lines


def section_tuning(t: Tables) -> list[str]:
    lines = ["## 5. Tuning", ""]
    if t.trials.empty:
        return lines + ["No tuning trials: every cell used the study's fixed learning rate and batch size.", ""]
    top = t.expected.groupby("cell", sort=False)["expected"].agg(["first", "last"]) if not t.expected.empty \
        else pd.DataFrame(columns=["first", "last"])
    rows = []
    for r in t.summary.itertuples():
        g = t.trials[t.trials["cell"] == r.cell]
        counts = g["status"].value_counts()
        said = ", ".join(f"{counts[k]} {k}" for k in sorted(counts.index))
        e1, en = (top.loc[r.cell, "first"], top.loc[r.cell, "last"]) if r.cell in top.index else (math.nan,) * 2
        rows.append([r.label, f"{len(g)} ({said})", _f(e1), _f(en), _f(r.lr, ".2e"), str(r.batch_size)])
    lines += md_table(["cell", "trials", "expected best of 1", "best of all", "chosen lr", "chosen batch"], rows)
    return lines + ["The expected best of k trials (Dodge et al. 2019) treats the completed trials as draws from "
                    "one distribution; pruned and failed trials have no objective and are left out, and TPE's "
                    "later trials depend on earlier ones, so read it as an approximation.", ""]


def section_provenance(t: Tables) -> list[str]:
    m, study, records = t.stored.manifest, t.stored.manifest["study"], t.stored.records
    seconds = pd.Series([r.get("seconds") or 0.0 for r in records])
    tune = sum(r.get("seconds") or 0.0 for r in records if r["role"] == "tune")
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
             f"min tuning, {(seconds.sum() - tune) / 60:.1f} min evaluation)",
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
