"""Per-run overfitting diagnostics from the stored per-epoch histories, for section 3 of the report.

A run's ``history`` is a list of per-epoch dicts (epoch, train_loss, train_accuracy, val_loss,
val_accuracy, val_f1, val_correct, val_pred). From it: where validation accuracy peaked and
validation loss bottomed out, whether the drop from the peak to the last epoch exceeds the noise
of the validation set (``harness.stats.peaks``: the peak chosen on half of the validation reviews,
tested on the other half), the train-validation gap, and where early stopping with another
patience would have stopped. Which runs count is ``harness.kept``'s rule.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from harness.kept import ValidationSet, degenerate, restored_collapsed
from harness.records import DEGENERATE, decode_correct
from harness.stats import peaks
from harness.stats.proportions import mcnemar_exact, proportion_se, wilson_interval
from harness.stats.verdicts import ALPHA

PATIENCES = (1, 3, 5)


def validated(history: Sequence[dict]) -> list[dict]:
    """Epochs that reached validation (a diverged run's last row has a training loss only)."""
    return [h for h in history if "val_accuracy" in h]


def best_row(history: Sequence[dict], metric: str) -> dict | None:
    """The first epoch with the best `metric` (lowest for a loss, highest otherwise)."""
    rows = validated(history)
    if not rows:
        return None
    sign = 1.0 if metric.endswith("loss") else -1.0
    return min(rows, key=lambda h: (sign * h[metric], h["epoch"]))


def collapsed_rate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: runs judged on validation predictions, how many collapsed, the rate and its Wilson 95%
    interval over those runs. Takes run_row's frame (its ``val_collapsed`` column)."""
    out = []
    for cell, group in runs.groupby("cell", sort=False):
        judged = group["val_collapsed"].dropna().astype(bool) if "val_collapsed" in group else pd.Series(dtype=bool)
        k, n = int(judged.sum()), len(judged)
        lo, hi = wilson_interval(k, n)
        out.append({"cell": cell, "judged": n, "collapsed": k, "rate": k / n if n else math.nan, "lo": lo, "hi": hi})
    return pd.DataFrame(out)


def late_drop(history: Sequence[dict], val_size: int, alpha: float = ALPHA,
              groups: Sequence | None = None, seed: int = peaks.SPLIT_SEED) -> dict:
    """Peak validation accuracy against the last epoch's, and whether the drop exceeds noise.

    Descriptive figures (peak, last, drop, one binomial SE at the peak) are on the whole validation
    set. ``drop_p`` is harness.stats.peaks.split_drop_test: the peak chosen on half of the validation
    groups, tested against the last epoch on the other half, exact and clustered by ``groups``; the
    verdict uses it uncorrected for the number of runs (``correct_drops`` applies Holm over a
    study's evaluation runs). ``mcnemar_p`` is the exact McNemar p of the whole-set peak against
    the last epoch, kept for comparison only: it ignores that the peak was chosen on the same data.
    Without per-example records the verdict falls back to two standard errors of the difference.
    """
    rows = validated(history)
    if not rows:
        return {"verdict": "no validation"}
    peak, last = best_row(rows, "val_accuracy"), rows[-1]
    drop = peak["val_accuracy"] - last["val_accuracy"]
    out = {"peak_epoch": peak["epoch"], "peak_acc": peak["val_accuracy"], "last_epoch": last["epoch"],
           "last_acc": last["val_accuracy"], "drop": drop, "drop_examples": round(drop * val_size),
           "se": proportion_se(peak["val_accuracy"], val_size), "mcnemar_p": math.nan, "drop_p": math.nan}
    known = all(h.get("val_correct") for h in rows)
    if known and len(rows) > 1:
        test = peaks.split_drop_test(np.stack([decode_correct(h["val_correct"]) for h in rows]), groups, seed)
        out |= {"drop_p": test["p"], "split_peak_epoch": rows[test["chosen"]]["epoch"]}
    if peak is last or drop <= 0:
        return out | {"verdict": "no drop"}  # drop_p is then >= 0.5: a split test cannot see a drop here
    if known:
        out["mcnemar_p"] = mcnemar_exact(decode_correct(peak["val_correct"]), decode_correct(last["val_correct"]))[2]
        real = out["drop_p"] < alpha
    else:  # no per-example record: two standard errors of the difference (this ignores the choice of peak)
        real = drop > 2 * math.sqrt(2) * out["se"]
    return out | {"verdict": "real drop" if real else "within noise"}


def correct_drops(runs: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Holm (1979) over the study's kept evaluation runs' ``drop_p``: adds ``drop_p_holm`` and redoes
    their verdicts ('real drop' only when the corrected p < alpha). Other rows keep their verdict."""
    out = runs.copy()
    out["drop_p_holm"] = math.nan
    if "drop_p" not in out:
        return out
    family = (out["role"] == "eval") & out["flag"].isna() & out["drop_p"].notna()
    adjusted, real = peaks.decide_across_runs(out.loc[family, "drop_p"].astype(float).tolist(), alpha)
    out.loc[family, "drop_p_holm"] = adjusted
    tested = family & out["verdict"].isin(["real drop", "within noise"])
    out.loc[tested, "verdict"] = np.where(np.asarray(real)[tested[family].to_numpy()], "real drop", "within noise")
    return out


def gaps(history: Sequence[dict]) -> list[dict]:
    """Train minus validation accuracy, and validation minus train loss, by epoch.

    Training accuracy is the running figure over the epoch with dropout on, so early-epoch
    gaps understate the gap of the end-of-epoch weights.
    """
    return [{"epoch": h["epoch"], "acc_gap": h["train_accuracy"] - h["val_accuracy"],
             "loss_gap": h["val_loss"] - h["train_loss"]} for h in validated(history)]


def replay(history: Sequence[dict], patience: int, metric: str = "val_accuracy", min_delta: float = 0.0,
           budget: int | None = None) -> dict:
    """Replay early stopping on a logged curve with the training loop's rule (harness.run.train).

    An epoch improves when sign * metric < sign * best - min_delta (sign -1 for an accuracy); the
    rule fires once ``patience`` epochs in a row fail to improve, and the best epoch is restored.
    ``cost`` is the validation accuracy given up against the best epoch of the whole logged curve.
    ``budget`` is the run's epoch budget (default: the logged curve ran to its end).

    ``fired``: True (stopped at ``stop_epoch``), False (ran to the budget without firing: measured),
    or None when the curve cannot tell: the budget is under patience + 1 epochs (the rule cannot
    fire at all), or the curve was cut short (by the study's own patience, pruning or divergence)
    before this patience ran out. Then ``stop_epoch`` is None and ``cost`` NaN, not 0; ``why`` says which.
    """
    rows = validated(history)
    unknown = {"stop_epoch": None, "restored_epoch": None, "fired": None, "epochs_saved": None, "cost": math.nan}
    if not rows:
        return unknown | {"why": "no validation"}
    sign = 1.0 if metric.endswith("loss") else -1.0
    best, waited = None, 0
    for h in rows:
        if best is None or sign * h[metric] < sign * best[metric] - min_delta:
            best, waited = h, 0
        else:
            waited += 1
        if waited >= patience:
            return _replayed(rows, best, h, True, "fired")
    budget = rows[-1]["epoch"] if budget is None else budget
    complete = rows[-1]["epoch"] >= budget
    if budget < patience + 1:
        return unknown | {"restored_epoch": best["epoch"] if complete else None,
                          "why": f"cannot fire: a budget of {budget} epochs is under patience + 1"}
    if not complete:
        return unknown | {"why": f"cut short at epoch {rows[-1]['epoch']} of {budget} before patience ran out"}
    return _replayed(rows, best, rows[-1], False, "ran to the budget")


def _replayed(rows: list[dict], best: dict, stop: dict, fired: bool, why: str) -> dict:
    full = best_row(rows, "val_accuracy")
    return {"stop_epoch": stop["epoch"], "restored_epoch": best["epoch"], "fired": fired,
            "epochs_saved": rows[-1]["epoch"] - stop["epoch"], "cost": full["val_accuracy"] - best["val_accuracy"],
            "why": why}


def run_row(record: dict, metric: str = "val_accuracy", patiences: Sequence[int] = PATIENCES,
            min_delta: float = 0.0, val: ValidationSet | None = None) -> dict:
    """One run's diagnostics as a flat row for the per-run table.

    ``metric`` and ``min_delta`` are the study's early-stopping settings; ``val`` carries the validation
    labels (collapse) and groups (the clustered late-drop test).
    """
    history = record.get("history") or []
    row = {"cell": record["cell"], "role": record["role"], "seed": record["seed"], "trial": record.get("trial"),
           "status": record.get("status"), "flag": degenerate(record, val),
           "val_collapsed": restored_collapsed(record, val)}
    rows = validated(history)
    if not rows:
        return row
    epochs = peaks.peak_and_min_loss(rows)
    row |= {"min_loss_epoch": epochs["loss_min_epoch"], "peak_after_min_loss": epochs["lag"],
            "best_epoch": record.get("best_epoch"), "stopped_epoch": record.get("stopped_epoch", rows[-1]["epoch"])}
    row |= late_drop(rows, int(record.get("val_size") or len(rows[0].get("val_correct", "")) or 0),
                     groups=None if val is None else val.groups)
    last_gap = gaps(rows)[-1]
    row |= {"last_acc_gap": last_gap["acc_gap"], "last_loss_gap": last_gap["loss_gap"]}
    for p in patiences:
        r = replay(history, p, metric, min_delta, record.get("epochs"))
        row |= {f"p{p}_stop": r["stop_epoch"], f"p{p}_fired": r["fired"], f"p{p}_cost": r["cost"]}
    return row


def cell_summary(runs: pd.DataFrame, patiences: Sequence[int] = PATIENCES) -> pd.DataFrame:
    """Per cell: runs, flags by kind, median peak / min-loss epochs (and epochs from the loss minimum to
    the accuracy peak), mean drop, real drops, replay figures.

    Flagged runs are counted but kept out of every average. Real drops count run_row's verdicts, or
    correct_drops' Holm-corrected ones when the frame has been through it. Per patience: the mean
    stopping epoch and cost over the runs whose replay could tell (``p{p}_decided``), and how many of
    them fired; NaN, not 0, when no run could tell. (The replay itself, with the study's min_delta,
    happens in run_row.)
    """
    out = []
    for cell, group in runs.groupby("cell", sort=False):
        good = group[group["flag"].isna()]
        row = {"cell": cell, "runs": len(group),
               **{kind: int((group["flag"] == kind).sum()) for kind in DEGENERATE},
               "peak_epoch": _median(good, "peak_epoch"), "min_loss_epoch": _median(good, "min_loss_epoch"),
               "peak_after_min_loss": _median(good, "peak_after_min_loss"),
               "drop": _mean(good, "drop"), "real_drops": int((good.get("verdict") == "real drop").sum()),
               "last_acc_gap": _mean(good, "last_acc_gap")}
        for p in patiences:
            fired = good.get(f"p{p}_fired", pd.Series(dtype=object)).dropna()
            row |= {f"p{p}_stop": _mean(good, f"p{p}_stop"), f"p{p}_decided": len(fired),
                    f"p{p}_fired": int(fired.astype(bool).sum()) if len(fired) else math.nan,
                    f"p{p}_cost": _mean(good, f"p{p}_cost")}
        out.append(row)
    return pd.DataFrame(out)


def _mean(frame: pd.DataFrame, column: str) -> float:
    return float(frame[column].astype(float).mean()) if column in frame and len(frame) else math.nan


def _median(frame: pd.DataFrame, column: str) -> float:
    return float(np.nanmedian(frame[column].astype(float))) if column in frame and frame[column].notna().any() \
        else math.nan
