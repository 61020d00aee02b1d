"""Section 3: overfitting and early stopping, from the logged validation curves.

Was a late peak real? On the test set: each evaluation run is also scored with its last epoch's
weights, and the last epoch minus the restored one is estimated per cell and pooled, paired per
example (harness.stats.paired). The detail, on validation: each run's peak is chosen on half of
the validation groups and tested against the last epoch on the other half (harness.stats.peaks),
Holm across the study's runs.
Also: where validation loss bottomed out against where accuracy peaked, the runs that collapsed
to one class (judged on validation), and early stopping replayed with other patiences, with the
study's min_delta, saying where a replay cannot tell.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.evidence import Evidence
from harness.kept import ValidationSet
from harness.records import decode_classes
from harness.report import diagnostics

from harness.stats import paired, peaks
from harness.report.format import effect, label, md_table, num, plural, pval, signed
from harness.report.frames import Stored

LAB = {"n": 200, "before": 0.88, "after": 0.89}  # the lab: 0.88 at the end, 0.89 at epoch 18, 200 validation reviews


@dataclass(frozen=True)
class Overfitting:
    runs: pd.DataFrame  # per run (tuning and evaluation): diagnostics.run_row, Holm-corrected drops
    cells: pd.DataFrame  # per cell: diagnostics.cell_summary of the evaluation runs
    collapse: pd.DataFrame  # per cell: collapsed runs among the evaluation runs, rate, Wilson interval
    smallest: dict  # the smallest drop the split test could ever call real, after Holm's first step
    val_size: int
    val_groups: int
    last: dict = dataclasses.field(default_factory=dict)  # last epoch minus restored on the test set (`last_epoch`)


def compute(stored: Stored, ev: Evidence | None = None) -> Overfitting:
    train, a = stored.study.train, stored.analysis
    val = ValidationSet.from_splits(stored.splits) if stored.splits.get("val_labels") else None
    rows = pd.DataFrame([diagnostics.run_row(r.to_dict(), train.metric, diagnostics.PATIENCES, train.min_delta, val)
                         for r in stored.records])
    rows = diagnostics.correct_drops(rows, a.alpha)
    evals = rows[rows["role"] == "eval"]
    cells = diagnostics.cell_summary(evals) if not evals.empty else pd.DataFrame()
    collapse = diagnostics.collapsed_rate(evals) if "val_collapsed" in evals else pd.DataFrame()
    n = len(stored.splits.get("val_labels", "")) or int(next((r.val_size for r in stored.records if r.val_size), 0))
    groups = stored.splits.get("val_groups")
    g = len(set(groups)) if groups is not None else None
    half = peaks.group_halves(peaks.as_groups(groups, n)) if n else np.zeros(0, bool)
    family = int((evals["flag"].isna() & evals.get("drop_p", pd.Series(dtype=float)).notna()).sum()) or 1
    b_groups = len(set(np.asarray(groups)[~half])) if groups is not None and n else None
    smallest = peaks.smallest_real_change(int((~half).sum()), b_groups, a.alpha / family, two_sided=False) \
        if n else {"net": None, "accuracy": math.nan, "min_p": math.nan}
    return Overfitting(rows, cells, collapse, smallest | {"family": family, "n_b": int((~half).sum())}, n, g or n,
                       last_epoch(stored, ev) if ev is not None else {})


def last_epoch(stored: Stored, ev: Evidence) -> dict:
    """Test accuracy with the last epoch's weights minus with the restored epoch's, per cell and pooled.

    Each kept evaluation run's two test evaluations are paired example by example (D = right at
    the last epoch - right at the restored one); harness.stats.paired gives each cell's mean with
    its seed and clustered test parts and a pooled mean over the cells (each counts once), all
    simultaneous. Runs whose record has no last-epoch score (written before it was kept) are left
    out and counted. {} without a test set.
    """
    if ev.source != "test" or not ev.kept.any():
        return {}
    a = stored.analysis
    cells = {c: i for i, c in enumerate(ev.cells["cell"])}
    seeds = {(int(r), int(s)): j for j, (r, s) in enumerate(zip(ev.replicates, ev.seeds))}  # a column: (search, seed)
    last = np.full(ev.Y.shape, np.nan)
    peaked = np.zeros(ev.Y.shape[:2], int)
    for r in stored.evals:
        c, s = cells.get(r.cell), seeds.get((int(r.replicate), int(r.seed)))
        if c is None or s is None or not ev.kept[c, s] or len(r.test_last.get("pred", "")) != len(ev.labels):
            continue
        last[c, s] = decode_classes(r.test_last["pred"]) == ev.labels
        peaked[c, s] = int(r.test_last["epoch"] != r.best_epoch)
    scored = ~np.isnan(last[..., 0]) & ev.kept
    out = {"kept": int(ev.kept.sum()), "scored": int(scored.sum()), "level": 1 - a.alpha, "delta": a.smallest_effect}
    if not scored.any():
        return out
    table = paired.differences(np.where(scored[..., None], last - ev.Y, np.nan), ev.groups, a.alpha,
                               a.smallest_effect, pooled=True)
    index = table["cell"].to_numpy()
    names = np.array(list(ev.cells["cell"]) + ["pooled"], dtype=object)
    restored, at_last = _mean_over_runs(np.where(scored[..., None], ev.Y, np.nan)), _mean_over_runs(last)
    table = table.assign(cell=names[index], peaked=[int(peaked[i].sum()) if i >= 0 else int(peaked.sum())
                                                    for i in index],
                         restored=[restored[i] if i >= 0 else math.nan for i in index],
                         last=[at_last[i] if i >= 0 else math.nan for i in index])
    return out | {"table": table}


def _mean_over_runs(Y: np.ndarray) -> np.ndarray:
    """(C,) mean over each cell's runs and examples, NaN for a cell without a run."""
    n = np.isfinite(Y).sum(axis=(1, 2))
    return np.where(n > 0, np.nansum(Y, axis=(1, 2)) / np.maximum(n, 1), np.nan)


def last_epoch_sentence(o: Overfitting) -> str:
    """The late-peak question on the test set, with power: last epoch minus restored, pooled and per cell."""
    last = o.last
    if not last:
        return ""
    if "table" not in last:
        return ("Whether training on to the last epoch instead of stopping at the validation peak changes test "
                f"accuracy cannot be said for these runs: none of the {last['kept']} kept evaluation runs' records "
                "holds a test score of its last epoch's weights (they were written before the harness kept one).")
    t = last["table"]
    pooled, cells = t[t["cell"] == "pooled"].iloc[0], t[t["cell"] != "pooled"]
    words = cells["verdict"].str.split(",").str[0].str.split(" ").str[0].value_counts()
    tally = ", ".join(f"{words[w]} {w}" for w in ("better", "worse", "equivalent", "undecided") if w in words)
    left = last["kept"] - last["scored"]
    return (f"Training on to the last epoch instead of stopping at the validation peak changed test accuracy by "
            f"{effect(pooled['estimate'], pooled['lo_sim'], pooled['hi_sim'])}, {pooled['verdict']} (the mean over "
            f"the {len(cells)} cells, each counting once, of each run's last-epoch minus restored-epoch accuracy, "
            f"paired per test example; {last['level']:.0%} simultaneous with the cells' own, seed and clustered test "
            f"variance; in {int(pooled['peaked'])} of the {last['scored']} runs the restored epoch was not the last); per cell: "
            f"{tally}"
            + (f". {plural(left, 'kept run')} without a last-epoch test score (older records) "
               f"{'is' if left == 1 else 'are'} left out" if left else "") + ".")


def late_peak_sentence(o: Overfitting, alpha: float) -> str:
    """The lab's epoch-18 question: on the test set with the grid's power, then per run on validation."""
    powered = last_epoch_sentence(o)
    detail = _split_sentence(o, alpha)
    return f"{powered} The detail, run by run on validation: {detail[0].lower()}{detail[1:]}" if powered else detail


def _split_sentence(o: Overfitting, alpha: float) -> str:
    """Every run's peak tested against its last epoch on validation (the split test), in one sentence."""
    evals = o.runs[(o.runs["role"] == "eval") & o.runs["flag"].isna()]
    if evals.empty or "verdict" not in evals:
        return "No evaluation run logged a validation curve."
    peaked = evals[evals["verdict"].isin(["real drop", "within noise"])]
    real = int((peaked["verdict"] == "real drop").sum())
    lab_p = peaks.min_p(round((LAB["after"] - LAB["before"]) * LAB["n"]))
    small = o.smallest
    can = (f"the smallest drop this validation set could ever call real across these {small['family']} runs is "
           f"{small['net']} of the {small['n_b']} tested examples ({small['accuracy']:.3f})" if small.get("net")
           else "this validation set is too small for any drop to be called real")
    return (f"{len(peaked)} of {len(evals)} kept evaluation runs peaked in validation accuracy before their last "
            f"epoch; with the peak chosen on half of the validation {_unit(o)} and tested on the other half (exact, "
            f"clustered, Holm across runs at α = {alpha:g}), {plural(real, 'drop')} {'is' if real == 1 else 'are'} "
            f"real. {can[0].upper() + can[1:]}. The lab's 0.88 → 0.89 on {LAB['n']} validation reviews is "
            f"{round((LAB['after'] - LAB['before']) * LAB['n'])} reviews: no test on that set can call it real "
            f"(the smallest exact p it can reach is {lab_p:g}).")


def _unit(o: Overfitting) -> str:
    return "groups" if o.val_groups < o.val_size else "examples"


# --- the page ---------------------------------------------------------------------------------

def render(stored: Stored, o: Overfitting) -> list[str]:
    lines = ["## 3. Overfitting and early stopping", ""]
    evals = o.runs[o.runs["role"] == "eval"]
    if o.cells.empty or "peak_epoch" not in evals:
        return lines + ["No evaluation run logged a validation curve.", ""]
    grouped = f"in {o.val_groups} groups" if o.val_groups < o.val_size else "(no groups: each counts as independent)"
    lines += [f"The validation set has {o.val_size} examples {grouped}. " + late_peak_sentence(o, stored.analysis.alpha),
              ""]
    lines += _last(o) + _cells(o) + _runs(o) + _replay(stored, o)
    return lines


def _last(o: Overfitting) -> list[str]:
    """Per cell and pooled: test accuracy with the restored epoch's weights and with the last epoch's."""
    if "table" not in o.last:
        return []
    level = f"{o.last['level']:.0%}"
    rows = [[label(r.cell) if r.cell != "pooled" else "*pooled (mean over cells)*", str(int(r.runs)), str(int(r.peaked)),
             num(r.restored), num(r.last), effect(r.estimate, r.lo_sim, r.hi_sim), f"{num(r.se)}", r.verdict]
            for r in o.last["table"].itertuples()]
    return ["### Last epoch against the restored one, on the test set", "",
            "Every evaluation run is scored on the test set twice: with the weights of the epoch early stopping "
            "restored (the run's result everywhere else) and with the last epoch's, which choose nothing. "
            "*Last − restored*: the mean over the cell's runs of the per-example difference, with its seed part and "
            f"its test part clustered by group; simultaneous {level} intervals over the cells and their mean (max-t), "
            f"verdicts at ±{o.last['delta']:g}. *Not last*: runs whose restored epoch was not their last.", ""] + \
        md_table(["cell", "runs", "not last", "restored", "last", f"last − restored [sim. {level}]", "se", "verdict"],
                 rows)


def _cells(o: Overfitting) -> list[str]:
    rate = o.collapse.set_index("cell") if not o.collapse.empty else pd.DataFrame()
    rows = []
    for r in o.cells.itertuples():
        collapsed = "n/a"
        if r.cell in rate.index and rate.loc[r.cell, "judged"]:
            c = rate.loc[r.cell]
            collapsed = f"{int(c['collapsed'])}/{int(c['judged'])} [{c['lo']:.2f}, {c['hi']:.2f}]"
        rows.append([label(r.cell), str(r.runs), collapsed, num(r.peak_epoch, "g"), num(r.min_loss_epoch, "g"),
                     signed(r.peak_after_min_loss, "+.1f"), signed(r.drop), str(r.real_drops)])
    return md_table(["cell", "runs", "collapsed on validation [Wilson 95%]", "peak val-acc epoch (median)",
                     "min val-loss epoch (median)", "peak − min-loss epochs", "peak − last (mean)",
                     "real drops"], rows)


def _runs(o: Overfitting) -> list[str]:
    ok = o.runs[(o.runs["role"] == "eval") & o.runs["flag"].isna() & o.runs.get("peak_epoch", pd.Series()).notna()]
    rows = [[label(r.cell), str(r.seed), num(r.peak_epoch, "g"), num(r.min_loss_epoch, "g"), num(r.last_epoch, "g"),
             f"{num(r.peak_acc)} → {num(r.last_acc)}", f"{signed(r.drop)} ({int(r.drop_examples):+d})",
             pval(getattr(r, "drop_p", math.nan)), pval(getattr(r, "drop_p_holm", math.nan)), r.verdict]
            for r in ok.itertuples()]
    return ["### Per run", "", "p: the split test of one run; p (Holm): corrected across the study's runs.", ""] + \
        md_table(["cell", "seed", "peak epoch", "min-loss epoch", "last", "val acc peak → last", "drop (examples)",
                  "p", "p (Holm)", "verdict"], rows)


def _replay(stored: Stored, o: Overfitting) -> list[str]:
    train = stored.study.train
    lines = ["### Early stopping replayed", "",
             f"The training loop stops after `patience` epochs without improving {train.metric} by more than "
             f"min_delta = {train.min_delta:g} (this study: patience {train.patience}) and restores the best "
             f"epoch. Replayed on the logged curves with patience {', '.join(map(str, diagnostics.PATIENCES))}: "
             "mean stopping epoch, in how many runs the rule fired out of those whose curve could tell, and the "
             "mean validation accuracy given up against the best epoch of the whole curve. *cannot tell*: "
             "the epoch budget is under patience + 1, or the study's own early stopping cut every curve first.", ""]
    rows = []
    for r in o.cells.itertuples():
        cells = [label(r.cell)]
        for p in diagnostics.PATIENCES:
            decided = getattr(r, f"p{p}_decided")
            cells.append("cannot tell" if not decided else
                         f"{num(getattr(r, f'p{p}_stop'), '.1f')} ({int(getattr(r, f'p{p}_fired'))}/{decided}) "
                         f"{signed(getattr(r, f'p{p}_cost'))}")
        rows.append(cells)
    return lines + md_table(["cell"] + [f"patience {p}: stop (fired/runs) cost" for p in diagnostics.PATIENCES], rows)


def curves(stored: Stored) -> pd.DataFrame:
    """Long form: one row per (kept evaluation run, epoch) with validation metrics and the train-validation gap."""
    rows = [{"cell": r.cell, "label": label(r.cell), "seed": r.seed, **h, **g}
            for r in stored.evals if r.status not in ("failed", "diverged", "collapsed", "pruned")
            for h, g in zip(diagnostics.validated(r.history), diagnostics.gaps(r.history))]
    return pd.DataFrame(rows).drop(columns=["val_correct", "val_pred"], errors="ignore")
