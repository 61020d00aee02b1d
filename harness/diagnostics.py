"""Overfitting diagnostics from the logged per-epoch curves, and the degenerate-run flags.

A run's ``history`` is a list of per-epoch dicts (epoch, train_loss, train_accuracy,
val_loss, val_accuracy, val_f1, val_correct). Everything here is a pure function
of such a list (or of one stored record): where validation accuracy peaked and
validation loss bottomed out, whether the drop from the peak to the last epoch
is larger than the noise of a validation set of that size (harness.peaks: the peak is
chosen on one half of the validation reviews and tested on the other), the train-validation
gap by epoch, where early stopping with another patience would have stopped, and whether a
run collapsed to one class, judged on validation predictions only (the test set plays no part
in which runs are kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from harness import peaks, stats

PATIENCES = (1, 3, 5)
EXCLUDED = ("failed", "diverged", "collapsed")  # never averaged into a cell's metrics


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


@dataclass(frozen=True)
class ValidationSet:
    """What the store knows of the validation set, in the order of every ``val_correct`` string."""

    labels: np.ndarray | None = None  # (N,) class indices
    groups: np.ndarray | None = None  # (N,) group (review) of each example; None: all independent
    n_classes: int | None = None

    @classmethod
    def from_splits(cls, splits: dict) -> "ValidationSet":
        """From the store's splits.json: ``val_labels``, ``class_names`` and, once stored, ``val_groups``."""
        labels = classes(splits["val_labels"]) if splits.get("val_labels") else None
        groups = np.asarray(splits["val_groups"]) if splits.get("val_groups") is not None else None
        return cls(labels, groups, len(splits["class_names"]) if splits.get("class_names") else None)


def classes(stored: str | Sequence[int]) -> np.ndarray:
    """Class indices from a stored string of digits ('0110') or a list of integers."""
    if isinstance(stored, str):
        return np.frombuffer(stored.encode("ascii"), dtype=np.uint8).astype(np.int64) - ord("0")
    return np.asarray(stored, dtype=np.int64)


def val_predictions(row: dict, val: ValidationSet | None = None) -> np.ndarray | None:
    """Predicted classes on the validation set at one epoch, or None when the store cannot tell.

    A stored ``val_pred`` is used as it is. Without it a binary task's predictions follow from the
    correctness bits and the labels (right: the label, wrong: the other class); with more classes a
    wrong prediction could be any other class, so they cannot be rebuilt.
    """
    if row.get("val_pred") is not None:
        return classes(row["val_pred"])
    if val is None or val.labels is None or val.n_classes != 2 or not row.get("val_correct"):
        return None
    right = stats.bits(row["val_correct"])
    return np.where(right, val.labels, 1 - val.labels)


def collapsed(pred: Sequence[int] | None) -> bool | None:
    """One class predicted for every example (None: no predictions to judge)."""
    if pred is None or len(pred) == 0:
        return None
    return len(np.unique(np.asarray(pred))) == 1


def restored_collapsed(record: dict, val: ValidationSet | None = None) -> bool | None:
    """Whether the restored (best) epoch predicted one class for every validation example."""
    row = next((h for h in validated(record.get("history") or []) if h["epoch"] == record.get("best_epoch")), None)
    return None if row is None else collapsed(val_predictions(row, val))


def degenerate(record: dict, val: ValidationSet | None = None) -> str | None:
    """'failed', 'diverged' (NaN/inf loss) or 'collapsed' (one class for every validation example).

    Collapse is judged on the restored epoch's validation predictions (a stored ``val_pred``, or a
    binary task's predictions rebuilt from ``val``), never on the test set: which runs are kept in
    a cell's means is a choice. Given ``val`` but no way to know the validation predictions (more
    than two classes and no ``val_pred``), a run is not called collapsed. Without ``val`` and
    ``val_pred`` the stored status is taken as it is (the training loop judges collapse on the restored
    epoch's validation predictions; stores older than that judged it on the test predictions).
    """
    if record.get("status") in ("failed", "diverged"):
        return record["status"]
    losses = [h.get(k) for h in record.get("history") or [] for k in ("train_loss", "val_loss") if k in h]
    if any(v is None or not math.isfinite(v) for v in losses):
        return "diverged"
    judged = restored_collapsed(record, val)
    if judged is None and val is None:
        return "collapsed" if record.get("status") == "collapsed" else None
    return "collapsed" if judged else None


def collapsed_rate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: runs judged on validation predictions, how many collapsed, the rate and its Wilson 95%
    interval over those runs. Takes run_row's frame (its ``val_collapsed`` column)."""
    out = []
    for cell, group in runs.groupby("cell", sort=False):
        judged = group["val_collapsed"].dropna().astype(bool) if "val_collapsed" in group else pd.Series(dtype=bool)
        k, n = int(judged.sum()), len(judged)
        lo, hi = stats.wilson_interval(k, n)
        out.append({"cell": cell, "judged": n, "collapsed": k, "rate": k / n if n else math.nan, "lo": lo, "hi": hi})
    return pd.DataFrame(out)


def late_drop(history: Sequence[dict], val_size: int, alpha: float = stats.ALPHA,
              groups: Sequence | None = None, seed: int = peaks.SPLIT_SEED) -> dict:
    """Peak validation accuracy against the last epoch's, and whether the drop exceeds noise.

    Descriptive figures (peak, last, drop, one binomial SE at the peak) are on the whole validation
    set. ``drop_p`` is harness.peaks.split_drop_test: the peak chosen on half of the validation
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
           "se": stats.proportion_se(peak["val_accuracy"], val_size), "mcnemar_p": math.nan, "drop_p": math.nan}
    known = all(h.get("val_correct") for h in rows)
    if known and len(rows) > 1:
        test = peaks.split_drop_test(np.stack([stats.bits(h["val_correct"]) for h in rows]), groups, seed)
        out |= {"drop_p": test["p"], "split_peak_epoch": rows[test["chosen"]]["epoch"]}
    if peak is last or drop <= 0:
        return out | {"verdict": "no drop"}  # drop_p is then >= 0.5: a split test cannot see a drop here
    if known:
        out["mcnemar_p"] = stats.mcnemar_exact(stats.bits(peak["val_correct"]), stats.bits(last["val_correct"]))[2]
        real = out["drop_p"] < alpha
    else:  # no per-example record: two standard errors of the difference (this ignores the choice of peak)
        real = drop > 2 * math.sqrt(2) * out["se"]
    return out | {"verdict": "real drop" if real else "within noise"}


def correct_drops(runs: pd.DataFrame, alpha: float = stats.ALPHA) -> pd.DataFrame:
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
    """Replay early stopping on a logged curve with the training loop's rule (harness.train).

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


def trial_value(record: dict, metric: str) -> float | None:
    """A tuning trial's value for the expected best of k trials (stats.expected_best).

    Complete: its objective. Pruned: the last validation ``metric`` it reported (of its first tuning
    seed, the one the pruner follows): it was stopped because that looked worse than its peers, and
    dropping it would leave only the survivors and inflate the expected best of few trials. Failed
    (or no validation at all): None, kept out.
    """
    if record.get("objective") is not None:
        return float(record["objective"])
    rows = validated(record.get("history") or [])
    if record.get("status") == "pruned" and rows:
        return float(rows[-1][metric])
    return None


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
               **{kind: int((group["flag"] == kind).sum()) for kind in EXCLUDED},
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
