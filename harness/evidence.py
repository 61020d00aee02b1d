"""What the stored runs say, as arrays: per-example correctness and predictions of every kept run.

The estimates (harness.stats.contrasts), the report and the adaptive seeds (harness.waves) all
start here. Y[c, s, i] is 1.0 where the evaluation run of cell c with seed s got example i
right, 0.0 where wrong, NaN for a run that is missing or left out (failed, diverged or
collapsed, judged on validation predictions; every run of a cell with an untuned search). A
column of Y is one (search, seed) pair, the same in every cell; the grid model pairs runs across
cells and searches by seed number. An evaluation run is scored on the test set; a
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

from harness.kept import kept, untuned
from harness.study import REPLICATE_STRIDE, Axis, Cell, Study, axes_of, expand, filled, sort_key
from harness.records import RunRecord, decode_classes
from harness.stats.cost import run_seconds
from harness.store import Results



@dataclass(frozen=True)
class Evidence:
    source: str  # "test" or "validation"
    cells: pd.DataFrame  # one row per cell in grid order: "cell" (its id) and a column per axis
    seeds: np.ndarray  # (S,) the seed of each column of Y
    replicates: np.ndarray  # (S,) the search (replicate) of each column of Y: a column is a (search, seed)
    Y: np.ndarray  # (C, S, N) 1.0 / 0.0 per example, NaN for a run that is missing or left out
    pred: np.ndarray  # (C, S, N) predicted class, NaN likewise
    labels: np.ndarray  # (N,) true class of each example
    groups: np.ndarray  # (N,) group (review) of each example; its own position when the study has none
    grouped: bool  # whether the groups came from the data
    order: dict[str, Callable]  # each axis's sort key for its levels
    runs: pd.DataFrame  # one row per evaluation record: cell (row of `cells`), seed, replicate, wave, seconds
    # (measured), cost (the cost model's seconds on the reference machine), trained, kept
    tune_cost: np.ndarray  # (C,) the cost model's seconds of one search's tuning trials, mean over its searches
    untuned: dict[int, str] = dataclasses.field(default_factory=dict)  # cell -> why it has no estimate

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

    def column(self, seed, replicate=0):
        """The column(s) of Y of (seed, replicate) pairs."""
        keys = np.asarray(self.replicates, dtype=np.int64) * REPLICATE_STRIDE + np.asarray(self.seeds, dtype=np.int64)
        want = np.asarray(replicate, dtype=np.int64) * REPLICATE_STRIDE + np.asarray(seed, dtype=np.int64)
        return np.searchsorted(keys, want)

    def upto(self, wave: int) -> "Evidence":
        """The evidence as it stood after `wave`: later waves' runs left out."""
        later = self.runs[self.runs["wave"] > wave]
        Y, pred = self.Y.copy(), self.pred.copy()
        at = (later["cell"].to_numpy(dtype=int), self.column(later["seed"].to_numpy(), later["replicate"].to_numpy()))
        Y[at], pred[at] = np.nan, np.nan
        return dataclasses.replace(self, Y=Y, pred=pred, runs=self.runs[self.runs["wave"] <= wave])

    def cost(self) -> np.ndarray:
        """(C,) the cost model's seconds per evaluation run (harness.stats.cost.run_seconds: the same on any
        machine): the mean over the cell's trained evaluation runs, else the median cell's."""
        trained = self.runs[self.runs["trained"] & self.runs["cost"].notna()]
        mean = trained.groupby("cell")["cost"].mean().reindex(range(len(self.cells))).to_numpy(dtype=float)
        fallback = np.nanmedian(mean) if np.isfinite(mean).any() else 1.0
        return np.maximum(np.where(np.isfinite(mean), mean, fallback), 1e-3)  # a run is never free

    def search_cost(self) -> np.ndarray:
        """(C,) the cost model's seconds of one more search: its tuning trials, then one evaluation run
        per seed the cell's searches have."""
        seeds = self.runs.groupby("cell")["seed"].nunique().reindex(range(len(self.cells))).fillna(0).to_numpy()
        tune = np.where(np.isfinite(self.tune_cost), self.tune_cost, 0.0)
        return tune + seeds * self.cost()

    def spent(self, since_wave: int = 1) -> np.ndarray:
        """(C,) the cost model's seconds of each cell's evaluation runs from wave `since_wave` on."""
        runs = self.runs[(self.runs["wave"] >= since_wave) & self.runs["trained"]]
        return np.bincount(runs["cell"].to_numpy(dtype=int), runs["cost"].fillna(0.0), minlength=len(self.cells))


def source_of(records: list[RunRecord]) -> str:
    """'test' when evaluation runs were tested; otherwise 'validation'."""
    return "test" if any(r.test.get("pred") for r in records if r.role == "eval") else "validation"



def from_results(results: Results, study: Study | None = None) -> Evidence:
    """The evidence of a results folder over every cell of its study (grid order)."""
    study = study or results.study()
    return from_records(results.records(), results.splits(), axes_of(study), expand(study))


def from_records(records: list[RunRecord], splits: dict, axes: list[Axis], cells: list[Cell] | None = None,
                 source: str | None = None) -> Evidence:
    """Every evaluation record of ``cells`` (default: those with records) as a row of Y and pred.

    The columns of Y are (search, seed) pairs: seeds are paired across cells by their number within
    each search replicate. A cell with an untuned search (``harness.kept.untuned``) keeps no run.
    ``source``: "validation" reads each run's restored epoch on the validation set even when runs were
    tested (what the report's choices are made on); default: the test set where there is one."""
    source = source or source_of(records)
    prefix = "test" if source == "test" else "val"
    labels = _digits(splits.get(f"{prefix}_labels", ""))
    stored_groups = splits.get(f"{prefix}_groups")
    groups = np.asarray(stored_groups if stored_groups is not None else np.arange(len(labels)).astype(str))
    frame = _cells(records, axes, cells)
    index = {c: i for i, c in enumerate(frame["cell"])}
    failed = {index[c]: why for (c, _), why in sorted(untuned(records).items(), reverse=True) if c in index}
    evals = [r for r in records if r.role == "eval" and r.cell in index]
    columns = sorted({(r.replicate, r.seed) for r in evals})
    Y = np.full((len(index), len(columns), len(labels)), np.nan)
    pred, rows, at = Y.copy(), [], {k: j for j, k in enumerate(columns)}
    for r in evals:
        c, s = index[r.cell], at[(r.replicate, r.seed)]
        p = predictions(r, source)
        ok = kept(r) and c not in failed and p is not None and len(p) == len(labels) > 0
        if ok:
            pred[c, s], Y[c, s] = p, p == labels
        rows.append({"cell": c, "seed": r.seed, "replicate": r.replicate, "wave": r.wave, "seconds": r.seconds,
                     "cost": run_cost(r), "trained": r.trained, "kept": ok})
    runs = pd.DataFrame(rows, columns=["cell", "seed", "replicate", "wave", "seconds", "cost", "trained", "kept"]).astype(
        {"cell": int, "seed": int, "replicate": int, "wave": int, "seconds": float, "cost": float, "trained": bool,
         "kept": bool})
    order = {a.column: a.order for a in axes}
    return Evidence(source, frame, np.array([s for _, s in columns], dtype=int),
                    np.array([r for r, _ in columns], dtype=int), Y, pred, labels, groups, stored_groups is not None,
                    order, runs, _tune_cost(records, index), failed)


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


def run_cost(record: RunRecord) -> float:
    """A run's cost in the cost model's seconds (the same on any machine); its measured seconds for a
    record stored before runs kept their work."""
    if record.work:
        return run_seconds(record.stopped_epoch or 0, **record.work)
    return math.nan if record.seconds is None else float(record.seconds)


def _tune_cost(records: list[RunRecord], index: dict[str, int]) -> np.ndarray:
    """(C,) cost of one search's tuning trials: their summed cost, averaged over the cell's searches."""
    out = np.full(len(index), math.nan)
    totals: dict[int, dict[int, float]] = {}
    for r in records:
        if r.role == "tune" and r.cell in index:
            cost = run_cost(r)
            searches = totals.setdefault(index[r.cell], {})
            searches[r.replicate] = searches.get(r.replicate, 0.0) + (cost if math.isfinite(cost) else 0.0)
    for c, searches in totals.items():
        out[c] = float(np.mean(list(searches.values())))
    return out
