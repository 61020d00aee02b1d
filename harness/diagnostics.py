"""Overfitting diagnostics from the logged per-epoch curves, and the degenerate-run flags.

A run's ``history`` is a list of per-epoch dicts (epoch, train_loss, train_accuracy,
val_loss, val_accuracy, val_f1, val_correct). Everything here is a pure function
of such a list (or of one stored record): where validation accuracy peaked and
validation loss bottomed out, whether the drop from the peak to the last epoch
is larger than the noise of a validation set of that size, the train-validation
gap by epoch, and where early stopping with another patience would have stopped.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from harness import stats

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


def degenerate(record: dict) -> str | None:
    """'failed', 'diverged' (NaN/inf loss) or 'collapsed' (one class predicted for every test example)."""
    if record.get("status") in EXCLUDED:
        return record["status"]
    losses = [h.get(k) for h in record.get("history") or [] for k in ("train_loss", "val_loss") if k in h]
    if any(v is None or not math.isfinite(v) for v in losses):
        return "diverged"
    pred = (record.get("test") or {}).get("pred")
    if pred and len(set(pred)) == 1:
        return "collapsed"
    return None


def late_drop(history: Sequence[dict], val_size: int, alpha: float = stats.ALPHA) -> dict:
    """Peak validation accuracy against the last epoch's, and whether the difference exceeds noise.

    Noise twice over: the binomial standard error of an accuracy on `val_size` examples, and the
    exact McNemar test on the two epochs' per-example correctness (same examples, so paired).
    """
    rows = validated(history)
    if not rows:
        return {"verdict": "no validation"}
    peak, last = best_row(rows, "val_accuracy"), rows[-1]
    drop = peak["val_accuracy"] - last["val_accuracy"]
    out = {"peak_epoch": peak["epoch"], "peak_acc": peak["val_accuracy"], "last_epoch": last["epoch"],
           "last_acc": last["val_accuracy"], "drop": drop, "drop_examples": round(drop * val_size),
           "se": stats.proportion_se(peak["val_accuracy"], val_size), "mcnemar_p": math.nan}
    if peak is last or drop <= 0:
        return out | {"verdict": "no drop"}
    if peak.get("val_correct") and last.get("val_correct"):
        out["mcnemar_p"] = stats.mcnemar_exact(stats.bits(peak["val_correct"]), stats.bits(last["val_correct"]))[2]
        real = out["mcnemar_p"] < alpha
    else:  # no per-example record: fall back to two standard errors of the difference
        real = drop > 2 * math.sqrt(2) * out["se"]
    return out | {"verdict": "real drop" if real else "within noise"}


def gaps(history: Sequence[dict]) -> list[dict]:
    """Train minus validation accuracy, and validation minus train loss, by epoch.

    Training accuracy is the running figure over the epoch with dropout on, so early-epoch
    gaps understate the gap of the end-of-epoch weights.
    """
    return [{"epoch": h["epoch"], "acc_gap": h["train_accuracy"] - h["val_accuracy"],
             "loss_gap": h["val_loss"] - h["train_loss"]} for h in validated(history)]


def replay(history: Sequence[dict], patience: int, metric: str = "val_accuracy", min_delta: float = 0.0) -> dict:
    """Replay early stopping on a logged curve, with the rule the training loop uses (harness.train).

    Stop once `patience` epochs in a row fail to improve the best `metric` by more than `min_delta`,
    and restore the best epoch. `cost` is the validation accuracy given up against the best epoch of
    the whole logged curve. `fired` is False when the curve ends before the rule would stop.
    """
    rows = validated(history)
    if not rows:
        return {"stop_epoch": None, "restored_epoch": None, "cost": math.nan, "fired": False}
    sign = 1.0 if metric.endswith("loss") else -1.0
    best, waited, stop = rows[0], 0, rows[-1]
    for h in rows[1:]:
        if sign * h[metric] < sign * best[metric] - min_delta:
            best, waited = h, 0
        else:
            waited += 1
        if waited >= patience:
            stop = h
            break
    fired = waited >= patience
    full = best_row(rows, metric)
    return {"stop_epoch": stop["epoch"], "restored_epoch": best["epoch"], "fired": fired,
            "epochs_saved": rows[-1]["epoch"] - stop["epoch"],
            "cost": full["val_accuracy"] - best["val_accuracy"]}


def run_row(record: dict, metric: str = "val_accuracy", patiences: Sequence[int] = PATIENCES) -> dict:
    """One run's diagnostics as a flat row for the per-run table."""
    history = record.get("history") or []
    row = {"cell": record["cell"], "role": record["role"], "seed": record["seed"], "trial": record.get("trial"),
           "status": record.get("status"), "flag": degenerate(record)}
    rows = validated(history)
    if not rows:
        return row
    loss = best_row(rows, "val_loss")
    row |= {"min_loss_epoch": loss["epoch"], "best_epoch": record.get("best_epoch"),
            "stopped_epoch": record.get("stopped_epoch", rows[-1]["epoch"])}
    row |= late_drop(rows, int(record.get("val_size") or len(rows[0].get("val_correct", "")) or 0))
    last_gap = gaps(rows)[-1]
    row |= {"last_acc_gap": last_gap["acc_gap"], "last_loss_gap": last_gap["loss_gap"]}
    for p in patiences:
        r = replay(rows, p, metric)
        row |= {f"p{p}_stop": r["stop_epoch"], f"p{p}_fired": r["fired"], f"p{p}_cost": r["cost"]}
    return row


def cell_summary(runs: pd.DataFrame, patiences: Sequence[int] = PATIENCES) -> pd.DataFrame:
    """Per cell: runs, flags by kind, median peak / min-loss epochs, mean drop, real drops, replay costs.

    Flagged runs are counted but kept out of every average.
    """
    out = []
    for cell, group in runs.groupby("cell", sort=False):
        good = group[group["flag"].isna()]
        row = {"cell": cell, "runs": len(group),
               **{kind: int((group["flag"] == kind).sum()) for kind in EXCLUDED},
               "peak_epoch": _median(good, "peak_epoch"), "min_loss_epoch": _median(good, "min_loss_epoch"),
               "drop": _mean(good, "drop"), "real_drops": int((good.get("verdict") == "real drop").sum()),
               "last_acc_gap": _mean(good, "last_acc_gap")}
        for p in patiences:
            row |= {f"p{p}_stop": _mean(good, f"p{p}_stop"), f"p{p}_fired": int(good.get(f"p{p}_fired",
                    pd.Series(dtype=bool)).fillna(False).astype(bool).sum()), f"p{p}_cost": _mean(good, f"p{p}_cost")}
        out.append(row)
    return pd.DataFrame(out)


def _mean(frame: pd.DataFrame, column: str) -> float:
    return float(frame[column].astype(float).mean()) if column in frame and len(frame) else math.nan


def _median(frame: pd.DataFrame, column: str) -> float:
    return float(np.nanmedian(frame[column].astype(float))) if column in frame and frame[column].notna().any() \
        else math.nan
