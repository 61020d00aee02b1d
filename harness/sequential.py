"""Seeds where the answer needs them: looks at a growing grid, and error control over repeated looks.

An adaptive study evaluates every cell on its first seeds (wave 0), looks at the grid's
comparisons (the answers and detail families of harness.estimate_grid), adds seeds to some
cells (wave 1), looks again, and so on, until every comparison is decided, every cell that
could still help is at its cap, or the budget is spent.

Error control. Looking again and again at a fixed alpha inflates the error (about 14% for 5
looks at 0.05: Armitage, McPherson & Rowe 1969). Look k here spends
alpha_k = a(t_k) - a(t_{k-1}) of each family's alpha, a the O'Brien-Fleming-type spending
function of Lan & DeMets (1983), a(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)), and gives
simultaneous (1 - alpha_k) intervals. By Bonferroni's inequality over looks, all intervals of
all looks cover together with probability >= 1 - sum_k alpha_k = 1 - a(t_K) >= 1 - alpha,
whatever the correlation between looks, so a comparison's verdict is read from the
intersection of its intervals over the looks (once decided, it stays decided; equivalence
verdicts included). The exact Lan-DeMets boundaries would need the joint law of the looks (a
Brownian motion whose information grows with seeds); here a comparison's information does
not grow in proportion to seeds (the test-set part does not shrink) and differs between
comparisons, so the union bound is used: a little conservative, and free of that model. The
allocation below depends on the estimates, which the inequality does not cover exactly; the
simulations in tests/test_sequential.py measure the error of the whole procedure.

Information fraction t_k: evaluation runs so far / the most the caps allow (sum of each
cell's max_evaluate), and 1 at a look after which no wave can follow (every cell at its cap,
no budget left for a run, or its wave planned as the last). All of that is known before the
look's data exist, so what a look spends never depends on what it sees. Without added seeds
the first look has t = 1 and spends alpha: the study is analysed as a fixed one. O'Brien-
Fleming spending keeps early looks nearly free (t = 0.3 spends 0.0003 of 0.05) and leaves
most of alpha to the last look; waves at most double a cell's seeds, so looks are few and
far apart (with Bonferroni, a look at 9 of 10 seeds would take alpha from the last one).

Where the next wave's seeds go is harness.allocation's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import special

from harness import estimate as est
from harness import estimate_grid as eg
from harness import estimate_verdicts as ev
from harness.estimate_verdicts import sidak

DRAWS = ev.DRAWS  # Monte Carlo draws of max |Z| per family
MC_FLOOR = 50  # draws beyond the max-t quantile below which Sidak's level is used instead
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


def room(runs: np.ndarray, cap: np.ndarray, cost: np.ndarray, pool: np.ndarray, left: np.ndarray) -> np.ndarray:
    """(C,) cells that may take one more run: below the cap, and its pool's budget left covers its cost."""
    return (runs < cap) & (cost <= left[pool])


# --- one look ------------------------------------------------------------------------------

def family_level(corr: np.ndarray, alpha: float, draws: int | None = None, seed: int = 0) -> float:
    """Per-estimate level for simultaneous 1 - alpha coverage of K estimates with correlation `corr`.

    Max-t by Monte Carlo (harness.estimate_verdicts), as `analyse` does, while at least
    MC_FLOOR draws lie beyond the quantile; an early look's alpha is far smaller, and there
    Sidak's level 1 - (1 - alpha)^(1/K) is used: valid for any correlation of normal
    estimates (Sidak 1967) and close to max-t in the far tail, where joint exceedances are rare.
    """
    K, draws = len(corr), draws or DRAWS
    if K <= 1:
        return alpha
    if alpha * draws < MC_FLOOR:
        return sidak(alpha, K)
    return ev.family_level(corr, alpha, ev.max_abs_draws(corr, draws, seed))


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


def family_at(comp: est.Components, contrasts: list[eg.Contrast], alpha: float, seed: int = 0) -> Family:
    """As estimate_grid.family_arrays, with `family_level` above (the same intervals at alpha >= 0.0025)."""
    W = np.stack([c.weights for c in contrasts])
    e = est.contrasts(comp, W)  # the caller keeps estimable contrasts only (estimate.estimable)
    se = e.se
    ok = np.isfinite(se) & (se > 0)
    level = family_level(ev.correlation(e.cov[np.ix_(ok, ok)]), alpha, seed=seed)
    crit = -special.stdtrit(e.df, level / 2)  # the lower tail: accurate at tiny levels
    lo, hi = ev.atanh_interval(e.estimate, se, crit)
    H = W @ comp.coef_map  # (K, R): weights on the runs
    in_cell = comp.run_cell[:, None] == np.arange(W.shape[1])  # (R, C)
    share = (H ** 2 * comp.resid_var[comp.run_cell]) @ in_cell
    share[share <= 1e-12 * share.max(axis=1, keepdims=True, initial=0.0)] = 0.0  # rounding, not a cell's runs
    keys = [(c.axis, c.level_a, c.level_b, c.context) for c in contrasts]
    return Family(keys, W, e.estimate, lo, hi, e.var_seed, e.var_test, e.df_seed, share, e.cov)


@dataclass(frozen=True)
class Look:
    alpha: float  # what this look spends of each family's alpha
    comp: est.Components
    families: dict[str, Family]  # "answers", "detail"


def look(Y: np.ndarray, groups: np.ndarray, cells: pd.DataFrame, order: dict[str, Callable], alpha: float,
         seed: int = 0, grid: eg.Grid | None = None) -> Look:
    """The grid's two families at level alpha (interaction tests too, which decide the answers' extra steps).

    grid: the cells' Grid when already built (reused where the same cells have runs).
    """
    comp = est.accuracy_components(Y, groups)
    if grid is None or not np.array_equal(grid.present, comp.n_runs > 0):
        grid = eg.Grid(cells, order, comp.n_runs > 0)
    _, answers = eg.answer_contrasts(comp, grid, alpha)
    keep = lambda found: [c for c in found if est.estimable(comp, c.weights)]  # noqa: E731 - cells sharing seeds
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
                verdict = ev.verdict(lo, hi, delta)  # no finite interval: "undecided: no interval"
                if decided(verdict):
                    row["decided_at"] = k
                row.update(lo=lo, hi=hi, estimate=float(f.estimate[i]), look=k, index=i, verdict=verdict)
    return out


