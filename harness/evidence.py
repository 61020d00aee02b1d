"""What the stored runs say, as arrays: per-example correctness and predictions of every kept run.

The estimates (harness.estimate_grid), the report and the adaptive seeds all start here. An
evaluation run is scored on the test set; a study without one is scored on the validation
set at each run's restored epoch (optimistic: that epoch was chosen on it). Runs that failed,
diverged or collapsed (judged on validation predictions) are left out: missing, not zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from harness.axes import Axis, sort_key
from harness.records import RunRecord

EXCLUDED = ("failed", "diverged", "collapsed", "pruned")


@dataclass(frozen=True)
class Evidence:
    source: str  # "test" or "validation"
    cells: pd.DataFrame  # one row per cell in grid order: "cell" and a column per axis
    seeds: list[int]  # the seed of each column of Y
    Y: np.ndarray  # (C, S, N) 1.0 / 0.0 per example, NaN for a run that is missing or left out
    pred: np.ndarray  # (C, S, N) predicted class, NaN likewise
    labels: np.ndarray  # (N,) true class of each example
    groups: np.ndarray  # (N,) group (review) of each example; its own row when the study has none
    grouped: bool  # whether the groups came from the data (else every example is its own group)
    order: dict[str, Callable]  # each axis's sort key

    @property
    def kept(self) -> np.ndarray:
        """(C, S) whether a run is in the estimates."""
        return ~np.isnan(self.Y[..., 0]) if self.Y.shape[2] else np.zeros(self.Y.shape[:2], bool)


def source_of(records: list[RunRecord]) -> str:
    """'test' when evaluation runs were tested; otherwise 'validation'."""
    return "test" if any(r.test.get("pred") for r in records if r.role == "eval") else "validation"


def gather(records: list[RunRecord], splits: dict, axes: list[Axis]) -> Evidence:
    """Every kept evaluation run as a row of Y and pred, cells in grid order, seeds in order."""
    source = source_of(records)
    prefix = "test" if source == "test" else "val"
    labels = _digits(splits.get(f"{prefix}_labels", ""))
    stored_groups = splits.get(f"{prefix}_groups")
    groups = np.asarray(stored_groups if stored_groups is not None else np.arange(len(labels)).astype(str))
    evals = [r for r in records if r.role == "eval"]
    ids = sorted({r.cell for r in evals}, key=lambda c: sort_key(axes, next(r.axes for r in evals if r.cell == c)))
    seeds = sorted({r.seed for r in evals})
    cells = pd.DataFrame([{"cell": c, **next(r.axes for r in evals if r.cell == c)} for c in ids])
    Y = np.full((len(ids), len(seeds), len(labels)), np.nan)
    pred = Y.copy()
    for r in evals:
        p = predictions(r, source)
        if r.status in EXCLUDED or p is None or len(p) != len(labels):
            continue
        c, s = ids.index(r.cell), seeds.index(r.seed)
        pred[c, s], Y[c, s] = p, p == labels
    order = {a.column: a.order for a in axes if a.column in cells.columns}
    return Evidence(source, cells, seeds, Y, pred, labels, groups, stored_groups is not None, order)


def predictions(record: RunRecord, source: str) -> np.ndarray | None:
    """A run's predicted classes on the test set, or on the validation set at its restored epoch."""
    if source == "test":
        return _digits(record.test.get("pred", "")) if record.test.get("pred") else None
    restored = next((h for h in record.history if h.get("epoch") == record.best_epoch), {})
    return _digits(restored["val_pred"]) if restored.get("val_pred") else None


def _digits(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(float) - ord("0")


def run_metric(ev: Evidence, metric: Callable[[np.ndarray, np.ndarray], float]) -> np.ndarray:
    """(C, S) ``metric(labels, pred)`` of every kept run, NaN elsewhere."""
    out = np.full(ev.Y.shape[:2], np.nan)
    for c, s in zip(*np.nonzero(ev.kept)):
        out[c, s] = metric(ev.labels, ev.pred[c, s].astype(int))
    return out


def majority(ev: Evidence, cls: int) -> float:
    """Accuracy of always answering class ``cls`` on the evaluated examples."""
    return float(np.mean(ev.labels == cls)) if len(ev.labels) else math.nan
