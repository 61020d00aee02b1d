"""Adaptive seeds, the looks: each wave's look spends a share of alpha, verdicts hold over all looks.

Look k gives simultaneous (1 - alpha_k) intervals, alpha_k the increment of an O'Brien-Fleming-type
spending function (Lan & DeMets 1983) at information fraction t_k (evaluation runs over what the
caps allow; 1 when no wave can follow). By Bonferroni over looks every interval of every look
covers jointly with probability >= 1 - alpha, so a comparison's verdict comes from its intervals
intersected over the looks. Where the next seeds go is ``allocation``'s. The method and the
simulations of its error rate: docs/methods.md, "Adaptive seeds".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import special

from harness.stats import contrasts, grid_model, verdicts

Key = tuple  # (axis, level_a, level_b, context): one comparison, the same at every look


# --- spending -------------------------------------------------------------------------------

def spend(t: float, alpha: float) -> float:
    """Alpha spent by information fraction t: Lan & DeMets (1983), O'Brien-Fleming type, two-sided."""
    if t <= 0:
        return 0.0
    z = -special.ndtri(alpha / 2)
    return float(special.erfc(z / math.sqrt(2 * min(t, 1.0))))  # 2 - 2 Phi(x) = erfc(x / sqrt 2)


def information(runs: np.ndarray, cap: np.ndarray, more: bool) -> float:
    """t: evaluation runs over the most the caps allow; 1 when no further wave can add a run (`more` False)."""
    return 1.0 if not more else min(1.0, float(np.sum(runs)) / float(np.sum(cap)))


# --- one look ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    """One family's comparisons at one look, with simultaneous intervals at the look's alpha."""

    keys: list[Key]
    W: np.ndarray  # (K, C) contrast weights over the cells
    estimate: np.ndarray  # (K,)
    lo: np.ndarray  # (K,) simultaneous interval (atanh scale, mapped back)
    hi: np.ndarray
    var_seed: np.ndarray  # (K,)
    var_test: np.ndarray  # (K,)
    df_seed: np.ndarray  # (K,) Satterthwaite df of var_seed
    share: np.ndarray  # (K, C) the part of var_seed each cell's runs carry
    cov: np.ndarray  # (K, K) total covariance
    var_search: np.ndarray  # (K,) the searches' luck (0 where the cells have one search each)
    search: np.ndarray  # (K, C) the part of var_search each cell's searches carry


def family_at(comp: grid_model.Components, found: list[contrasts.Contrast], alpha: float, seed: int = 0) -> Family:
    """contrasts.family_arrays at the look's alpha, with the part of the seed variance each cell carries."""
    W = np.stack([c.weights for c in found])  # the caller keeps estimable contrasts only (grid_model.estimable)
    f = contrasts.family_arrays(comp, W, alpha, seed)
    H = W @ comp.coef_map  # (K, R): weights on the runs
    in_cell = comp.run_cell[:, None] == np.arange(W.shape[1])  # (R, C)
    share = (H ** 2 * comp.run_var) @ in_cell
    share[share <= 1e-12 * share.max(axis=1, keepdims=True, initial=0.0)] = 0.0  # rounding, not a cell's runs
    keys = [(c.axis, c.level_a, c.level_b, c.context) for c in found]
    has = np.isfinite(comp.search_var) & (comp.replicates >= 2)
    search = W ** 2 * np.where(has, comp.search_var / np.maximum(comp.replicates, 1), 0.0)
    return Family(keys, W, f["estimate"], f["lo_sim"], f["hi_sim"], f["var_seed"], f["var_test"], f["df_seed"], share,
                  f["cov"], f["var_search"], search)


@dataclass(frozen=True)
class Look:
    alpha: float  # what this look spends of each family's alpha
    comp: grid_model.Components
    families: dict[str, Family]  # "answers", "detail"


def look(Y: np.ndarray, groups: np.ndarray, cells: pd.DataFrame, order: dict[str, Callable], alpha: float,
         seed: int = 0, grid: contrasts.Grid | None = None, replicates: np.ndarray | None = None,
         seeds: np.ndarray | None = None) -> Look:
    """The grid's two families at level alpha (interaction tests too, which decide the answers' extra steps).

    grid: the cells' Grid when already built (reused where the same cells have runs).
    """
    comp = grid_model.accuracy_components(Y, groups, replicates=replicates, seeds=seeds)
    if grid is None or not np.array_equal(grid.present, comp.n_runs > 0):
        grid = contrasts.Grid(cells, order, comp.n_runs > 0)
    _, answers = contrasts.answer_contrasts(comp, grid, alpha)
    keep = lambda found: [c for c in found if grid_model.estimable(comp, c.weights)]  # noqa: E731 - cells sharing seeds
    families = {name: family_at(comp, found, alpha, seed)
                for name, found in (("answers", keep(answers)), ("detail", keep(grid.detail()))) if found}
    return Look(alpha, comp, families)


# --- verdicts over looks --------------------------------------------------------------------

def decided(verdict: str) -> bool:
    return not verdict.startswith("undecided")


def combine(looks: list[Look], delta: float) -> dict[str, pd.DataFrame]:
    """Per family, each comparison's interval intersected over the looks it was in, and its verdict.

    decided_at: the first look whose running intersection decided it (-1: undecided); from then on the
    comparison keeps that look's interval, estimate and verdict. An empty intersection of an undecided
    one (an event of probability <= alpha) keeps the latest look's interval. look,
    index: where the comparison's latest estimate is (looks[look].families[name], row index).
    """
    return {name: pd.DataFrame([{"axis": key[0], "level_a": key[1], "level_b": key[2], "context": key[3]} | row
                                for key, row in rows.items()])
            for name, rows in running(looks, delta).items()}


def running(looks: list[Look], delta: float) -> dict[str, dict[Key, dict]]:
    """`combine` as plain dicts: family -> comparison -> lo, hi, estimate, decided_at, look, index, verdict."""
    out: dict[str, dict[Key, dict]] = {}
    for k, lk in enumerate(looks):
        for name, f in lk.families.items():
            rows = out.setdefault(name, {})
            for i, key in enumerate(f.keys):
                row = rows.setdefault(key, {"lo": -math.inf, "hi": math.inf, "decided_at": -1})
                if row["decided_at"] >= 0:
                    continue  # decided: its interval, estimate and verdict stay those of the look that decided it
                lo, hi = np.fmax(row["lo"], f.lo[i]), np.fmin(row["hi"], f.hi[i])
                lo, hi = (float(lo), float(hi)) if lo <= hi else (float(f.lo[i]), float(f.hi[i]))
                verdict = verdicts.verdict(lo, hi, delta)  # no finite interval: "undecided: no interval"
                if decided(verdict):
                    row["decided_at"] = k
                row.update(lo=lo, hi=hi, estimate=float(f.estimate[i]), look=k, index=i, verdict=verdict)
    return out


