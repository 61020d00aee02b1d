"""Which cells validation cannot tell from the best: a subset that holds the best with a stated error.

Picking the single best of many cells by a noisy validation score is a coin flip when they are close
(the winner's curse). Instead each cell i is kept unless some other cell j is shown better than it:
the one-sided lower bound of (j - i) over the other cells, simultaneous at level alpha by Sidak, lies
above 0 (Gupta 1965's subset selection, in the form of Hsu 1996's multiple comparisons with the best).
The best cell (by expected validation accuracy) is left out only when one of its C - 1 comparisons
errs, so with probability at most alpha (Sidak is valid here: comparisons that share a cell are
positively correlated). Contrasts come from the grid model (seed, search and clustered test parts).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from harness.stats import grid_model, verdicts


def tied_with_best(comp: grid_model.Components, alpha: float = verdicts.ALPHA) -> np.ndarray:
    """(C,) True for the cells that no other cell beats (see the module docstring); False for cells with no run."""
    C = len(comp.runs)
    have = np.flatnonzero(comp.n_runs > 0)
    keep = np.zeros(C, dtype=bool)
    if len(have) <= 1:
        keep[have] = True
        return keep
    level = -np.expm1(np.log1p(-alpha) / (len(have) - 1))  # one-sided Sidak over a cell's C - 1 comparisons
    for i in have:
        others = [j for j in have if j != i]
        W = np.zeros((len(others), C))
        W[np.arange(len(others)), others] = 1.0
        W[:, i] = -1.0
        ok = [k for k, w in enumerate(W) if grid_model.estimable(comp, w)]
        if not ok:
            keep[i] = True
            continue
        e = grid_model.contrasts(comp, W[ok])
        crit = stats.t.isf(level, np.where(np.isfinite(e.df), e.df, np.inf))
        lower = e.estimate - crit * e.se
        keep[i] = not np.any(np.nan_to_num(lower, nan=-math.inf) > 0)
    return keep


def cheapest(tied: np.ndarray, cost: np.ndarray, value: np.ndarray) -> int | None:
    """The declared secondary rule among tied cells: the lowest cost per run (the cost model's, the same on
    any machine), then the higher validation value; None when no cell is tied."""
    idx = np.flatnonzero(tied)
    if not len(idx):
        return None
    order = np.lexsort((-np.nan_to_num(value[idx], nan=-np.inf), np.nan_to_num(cost[idx], nan=np.inf)))
    return int(idx[order[0]])
