"""The grid estimator's inputs, read from stored records: who got which test example right, and at what cost.

Y[c, s, i] is 1.0 where the evaluation run of cell c with seed s predicted test example i
right, 0.0 where wrong, NaN for a run that is missing or excluded (failed, diverged or
collapsed: the report's rule, harness.diagnostics). Predictions come from each record's
test["pred"]; the labels and review groups of the fixed test set from splits.json. Seeds
are paired across cells by their number: column s of Y is the same seed in every cell.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from harness import diagnostics
from harness.axes import axes_of
from harness.grid import Cell, expand
from harness.records import RunRecord
from harness.store import Results
from harness.study import Study


@dataclass(frozen=True)
class Evidence:
    Y: np.ndarray  # (C, S, N) per-example correctness, NaN for a missing or excluded run
    groups: np.ndarray  # (N,) test group (review) of each example, as integers
    cells: pd.DataFrame  # one row per cell in grid order: "cell" (its id) and a column per axis
    order: dict[str, Callable]  # each axis's sort key for its levels
    seeds: np.ndarray  # (S,) the seed of each column of Y
    runs: pd.DataFrame  # one row per evaluation record: cell (row of `cells`), seed, wave, seconds, trained, kept
    tune_seconds: np.ndarray  # (C,) mean seconds of the cell's tuning runs (NaN: none)

    def upto(self, wave: int) -> "Evidence":
        """The evidence as it stood after `wave`: later waves' runs left out."""
        later = self.runs[self.runs["wave"] > wave]
        Y = self.Y.copy()
        Y[later["cell"].to_numpy(), np.searchsorted(self.seeds, later["seed"].to_numpy())] = np.nan
        return dataclasses.replace(self, Y=Y, runs=self.runs[self.runs["wave"] <= wave])

    @property
    def n_runs(self) -> np.ndarray:
        """(C,) evaluation records per cell, excluded ones included."""
        return np.bincount(self.runs["cell"], minlength=len(self.cells))

    @property
    def n_kept(self) -> np.ndarray:
        """(C,) runs that enter the estimates."""
        return np.isfinite(self.Y[..., 0]).sum(axis=1) if self.Y.shape[2] else np.zeros(len(self.cells), int)

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
        return np.bincount(runs["cell"], runs["seconds"].fillna(0.0), minlength=len(self.cells))


def from_results(results: Results, study: Study | None = None) -> Evidence:
    """The evidence of a results folder (its manifest's study unless `study` is given)."""
    study = study or results.study()
    return from_records(results.records(), results.splits(), expand(study), study)


def from_records(records: list[RunRecord], splits: dict, cells: list[Cell], study: Study) -> Evidence:
    """The evidence of `records` on the test set of `splits`, over `cells` (grid order)."""
    labels = np.frombuffer(splits.get("test_labels", "").encode(), np.uint8)
    groups = np.unique(np.asarray(splits.get("test_groups", []), dtype=str), return_inverse=True)[1]
    index = {c.id: i for i, c in enumerate(cells)}
    evals = [r for r in records if r.role == "eval" and r.cell in index]
    seeds = np.array(sorted({r.seed for r in evals}), dtype=int)
    Y = np.full((len(cells), len(seeds), len(labels)), np.nan)
    rows = []
    for r in evals:
        c, s = index[r.cell], int(np.searchsorted(seeds, r.seed))
        pred = (r.test or {}).get("pred") or ""
        kept = diagnostics.degenerate(r.to_dict()) is None and len(pred) == len(labels) > 0
        if kept:
            Y[c, s] = np.frombuffer(pred.encode(), np.uint8) == labels
        rows.append({"cell": c, "seed": r.seed, "wave": r.wave, "seconds": r.seconds, "trained": r.trained,
                     "kept": kept})
    columns = ["cell", "seed", "wave", "seconds", "trained", "kept"]
    runs = pd.DataFrame(rows, columns=columns).astype({"cell": int, "seed": int, "wave": int, "seconds": float,
                                                       "trained": bool, "kept": bool})
    return Evidence(Y, groups, cells_frame(cells, study), {a.column: a.order for a in axes_of(study)}, seeds,
                    runs, _tune_seconds(records, index))


def cells_frame(cells: list[Cell], study: Study) -> pd.DataFrame:
    """One row per cell: its id and its level of every axis (the grid estimator's `cells`)."""
    columns = [a.column for a in axes_of(study)]
    return pd.DataFrame([{"cell": c.id} | {a: c[a] for a in columns} for c in cells], columns=["cell", *columns])


def _tune_seconds(records: list[RunRecord], index: dict[str, int]) -> np.ndarray:
    out = np.full(len(index), math.nan)
    seconds: dict[int, list[float]] = {}
    for r in records:
        if r.role == "tune" and r.cell in index and r.seconds:
            seconds.setdefault(index[r.cell], []).append(r.seconds)
    for c, values in seconds.items():
        out[c] = float(np.mean(values))
    return out
