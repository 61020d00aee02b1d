"""What the stored runs say, as arrays: per-example correctness and predictions of every kept run.

The estimates (harness.stats.contrasts), the report and the adaptive seeds (harness.waves) all
start here. Y[c, s, i] is 1.0 where the evaluation run of cell c with seed s got example i
right, 0.0 where wrong, NaN for a run that is missing or left out (failed, diverged or
collapsed, judged on validation predictions). Seeds are paired across cells by their number:
column s of Y is the same seed in every cell. An evaluation run is scored on the test set; a
study without one is scored on the validation set at each run's restored epoch (optimistic:
that epoch was chosen on it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from harness.kept import kept
from harness.study import Axis, Cell, Study, axes_of, expand, filled, sort_key
from harness.records import RunRecord, decode_classes
from harness.store import Results



@dataclass(frozen=True)
class Evidence:
    source: str  # "test" or "validation"
    cells: pd.DataFrame  # one row per cell in grid order: "cell" (its id) and a column per axis
    seeds: np.ndarray  # (S,) the seed of each column of Y
    Y: np.ndarray  # (C, S, N) 1.0 / 0.0 per example, NaN for a run that is missing or left out
    pred: np.ndarray  # (C, S, N) predicted class, NaN likewise
    labels: np.ndarray  # (N,) true class of each example
    groups: np.ndarray  # (N,) group (review) of each example; its own position when the study has none
    grouped: bool  # whether the groups came from the data
    order: dict[str, Callable]  # each axis's sort key for its levels
    runs: pd.DataFrame  # one row per evaluation record: cell (row of `cells`), seed, wave, seconds, trained, kept
    tune_seconds: np.ndarray  # (C,) mean seconds of the cell's tuning runs (NaN: none)

    @property
    def kept(self) -> np.ndarray:
        """(C, S) whether a run is in the estimates."""
        return ~np.isnan(self.Y[..., 0]) if self.Y.shape[2] else np.zeros(self.Y.shape[:2], bool)

    @property
    def n_runs(self) -> np.ndarray:
        """(C,) evaluation records per cell, left-out ones included."""
        return np.bincount(self.runs["cell"].to_numpy(dtype=int), minlength=len(self.cells))

    @property
    def n_kept(self) -> np.ndarray:
        """(C,) runs that enter the estimates."""
        return self.kept.sum(axis=1)

    def upto(self, wave: int) -> "Evidence":
        """The evidence as it stood after `wave`: later waves' runs left out."""
        later = self.runs[self.runs["wave"] > wave]
        Y, pred = self.Y.copy(), self.pred.copy()
        at = (later["cell"].to_numpy(dtype=int), np.searchsorted(self.seeds, later["seed"].to_numpy()))
        Y[at], pred[at] = np.nan, np.nan
        return dataclasses.replace(self, Y=Y, pred=pred, runs=self.runs[self.runs["wave"] <= wave])

    def cost(self) -> np.ndarray:
        """(C,) seconds per evaluation run: the mean over the cell's trained evaluation runs, else over
        its tuning runs (a tuning run trains one seed as an evaluation does), else the median cell's."""
        trained = self.runs[self.runs["trained"] & self.runs["seconds"].notna()]
        mean = trained.groupby("cell")["seconds"].mean().reindex(range(len(self.cells))).to_numpy(dtype=float)
        mean = np.where(np.isfinite(mean), mean, self.tune_seconds)
        fallback = np.nanmedian(mean) if np.isfinite(mean).any() else 1.0
        return np.maximum(np.where(np.isfinite(mean), mean, fallback), 1e-3)  # a run is never free

    def spent(self, since_wave: int = 1) -> np.ndarray:
        """(C,) training seconds of each cell's evaluation runs from wave `since_wave` on."""
        runs = self.runs[(self.runs["wave"] >= since_wave) & self.runs["trained"]]
        return np.bincount(runs["cell"].to_numpy(dtype=int), runs["seconds"].fillna(0.0), minlength=len(self.cells))


def source_of(records: list[RunRecord]) -> str:
    """'test' when evaluation runs were tested; otherwise 'validation'."""
    return "test" if any(r.test.get("pred") for r in records if r.role == "eval") else "validation"



def from_results(results: Results, study: Study | None = None) -> Evidence:
    """The evidence of a results folder over every cell of its study (grid order)."""
    study = study or results.study()
    return from_records(results.records(), results.splits(), axes_of(study), expand(study))


def from_records(records: list[RunRecord], splits: dict, axes: list[Axis], cells: list[Cell] | None = None) -> Evidence:
    """Every evaluation record of ``cells`` (default: those with records) as a row of Y and pred."""
    source = source_of(records)
    prefix = "test" if source == "test" else "val"
    labels = _digits(splits.get(f"{prefix}_labels", ""))
    stored_groups = splits.get(f"{prefix}_groups")
    groups = np.asarray(stored_groups if stored_groups is not None else np.arange(len(labels)).astype(str))
    frame = _cells(records, axes, cells)
    index = {c: i for i, c in enumerate(frame["cell"])}
    evals = [r for r in records if r.role == "eval" and r.cell in index]
    seeds = np.array(sorted({r.seed for r in evals}), dtype=int)
    Y = np.full((len(index), len(seeds), len(labels)), np.nan)
    pred, rows = Y.copy(), []
    for r in evals:
        c, s = index[r.cell], int(np.searchsorted(seeds, r.seed))
        p = predictions(r, source)
        ok = kept(r) and p is not None and len(p) == len(labels) > 0
        if ok:
            pred[c, s], Y[c, s] = p, p == labels
        rows.append({"cell": c, "seed": r.seed, "wave": getattr(r, "wave", 0), "seconds": r.seconds,
                     "trained": r.trained, "kept": ok})
    runs = pd.DataFrame(rows, columns=["cell", "seed", "wave", "seconds", "trained", "kept"]).astype(
        {"cell": int, "seed": int, "wave": int, "seconds": float, "trained": bool, "kept": bool})
    order = {a.column: a.order for a in axes}
    return Evidence(source, frame, seeds, Y, pred, labels, groups, stored_groups is not None, order, runs,
                    _tune_seconds(records, index))


def _cells(records: list[RunRecord], axes: list[Axis], cells: list[Cell] | None) -> pd.DataFrame:
    columns = [a.column for a in axes]
    if cells is not None:
        rows = [{"cell": c.id} | {a: c[a] for a in columns} for c in cells]
    else:
        seen: dict[str, dict] = {}
        for r in records:
            if r.role == "eval":
                seen.setdefault(r.cell, r.axes)
        rows = [{"cell": c} | filled(axes, v) for c, v in sorted(seen.items(), key=lambda kv: sort_key(axes, filled(axes, kv[1])))]
    return pd.DataFrame(rows, columns=["cell", *columns])


def cells_frame(cells: list[Cell], study: Study) -> pd.DataFrame:
    """One row per cell: its id and its level of every axis (the grid estimator's `cells`)."""
    return _cells([], axes_of(study), cells)


def predictions(record: RunRecord, source: str) -> np.ndarray | None:
    """A run's predicted classes on the test set, or on the validation set at its restored epoch."""
    if source == "test":
        return _digits(record.test["pred"]) if record.test.get("pred") else None
    restored = record.restored
    return _digits(restored["val_pred"]) if restored.get("val_pred") else None


def _digits(text: str) -> np.ndarray:
    return decode_classes(text).astype(float)


def _tune_seconds(records: list[RunRecord], index: dict[str, int]) -> np.ndarray:
    out = np.full(len(index), math.nan)
    seconds: dict[int, list[float]] = {}
    for r in records:
        if r.role == "tune" and r.cell in index and r.seconds:
            seconds.setdefault(index[r.cell], []).append(r.seconds)
    for c, values in seconds.items():
        out[c] = float(np.mean(values))
    return out
