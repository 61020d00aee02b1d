"""The grid's questions as three families of contrasts, each with simultaneous intervals and verdicts.

- answers: each adjacent step a -> b of each axis, averaged with equal weights over every
  combination of the other axes where both cells have runs. Where two axes interact (next
  point), the steps of each are also given at every level of the other.
- interactions: for each pair of axes with two levels or more, a joint Wald F test that the
  steps of one axis are the same at every level of the other; Holm across pairs.
- detail: every adjacent pair of cells (one axis changes, the others fixed).

All estimates come from harness.stats.grid_model (one additive model over all runs, seed and test
parts combined); the intervals and verdicts from harness.stats.verdicts. Each family gets
its own simultaneous (1 - alpha) intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from harness.stats import grid_model, one_run, verdicts


@dataclass(frozen=True)
class Contrast:
    axis: str
    level_a: object
    level_b: object
    context: str  # "" when averaged over the other axes, else e.g. "epochs=3"
    weights: np.ndarray  # (C,) over the grid's cells, summing to 0


@dataclass(frozen=True)
class GridEstimates:
    """What `analyse` returns: one frame per question."""

    cells: pd.DataFrame  # each cell's mean over runs, se parts, df and own (1 - alpha) logit interval
    answers: pd.DataFrame  # `family` of the axes' steps (and per-level steps of interacting pairs)
    interactions: pd.DataFrame  # a Wald F test per pair of axes, Holm-adjusted p, detected
    detail: pd.DataFrame  # `family` of every adjacent pair of cells


class Grid:
    """The cells' axis values and which cells have runs, for building contrasts."""

    def __init__(self, cells: pd.DataFrame, order: dict[str, Callable], present: np.ndarray):
        missing = [a for a in order if a not in cells.columns]
        if missing:
            raise ValueError(f"cells has no column for axis {missing[0]!r}")
        self.cells, self.axes, self.present = cells.reset_index(drop=True), list(order), np.asarray(present)
        self.rows = [tuple(r) for r in self.cells[self.axes].itertuples(index=False)]
        self.levels = {a: sorted(self.cells[a].unique(), key=order[a]) for a in self.axes}
        self.index = {row: i for i, row in enumerate(self.rows)}
        self._steps: dict = {}

    def step(self, axis: str, a, b, fixed: tuple = ()) -> np.ndarray | None:
        """Weights of the step a -> b of `axis`, averaged over the contexts that agree with `fixed`
        ((axis, value) pairs) where both cells have runs; None where no context has both."""
        key = (axis, a, b, fixed)
        if key not in self._steps:
            self._steps[key] = self._step(*key)
        return self._steps[key]

    def _step(self, axis: str, a, b, fixed: tuple) -> np.ndarray | None:
        k = self.axes.index(axis)
        w, pairs = np.zeros(len(self.rows)), 0
        for row in dict.fromkeys(r[:k] + r[k + 1:] for r in self.rows):  # contexts, in grid order
            if any(row[self._other(axis, x)] != v for x, v in fixed):
                continue
            lo, hi = (self.index.get(row[:k] + (v,) + row[k:]) for v in (a, b))
            if lo is not None and hi is not None and self.present[lo] and self.present[hi]:
                w[lo], w[hi], pairs = w[lo] - 1, w[hi] + 1, pairs + 1
        return w / pairs if pairs else None

    def _other(self, axis: str, x: str) -> int:
        """Position of axis x in a context tuple (the axes without `axis`)."""
        return [a for a in self.axes if a != axis].index(x)

    def steps(self, axis: str, fixed: tuple = ()) -> list[Contrast]:
        levels, context = self.levels[axis], " ".join(f"{x}={v}" for x, v in fixed)
        out = [Contrast(axis, a, b, context, self.step(axis, a, b, fixed)) for a, b in zip(levels, levels[1:])]
        return [c for c in out if c.weights is not None]

    def answers(self) -> list[Contrast]:
        return [c for axis in self.axes for c in self.steps(axis)]

    def conditional(self, axis: str, by: str) -> list[Contrast]:
        """Steps of `axis` at each level of `by` (averaged over the remaining axes)."""
        return [c for v in self.levels[by] for c in self.steps(axis, ((by, v),))]

    def detail(self) -> list[Contrast]:
        """Every adjacent pair of cells: one axis steps, the others fixed."""
        out = []
        for axis in self.axes:
            others = [x for x in self.axes if x != axis]
            k = self.axes.index(axis)
            for context in dict.fromkeys(r[:k] + r[k + 1:] for r in self.rows):
                out += self.steps(axis, tuple(zip(others, context)))
        return out

    def pairs(self) -> list[tuple[str, str]]:
        multi = [a for a in self.axes if len(self.levels[a]) >= 2]
        return [(a, b) for i, a in enumerate(multi) for b in multi[i + 1:]]

    def interaction_rows(self, a: str, b: str) -> np.ndarray:
        """(q, C): each step of a at each level of b, minus that step at the first level of b where it exists."""
        rows = []
        for lo, hi in zip(self.levels[a], self.levels[a][1:]):
            at = [w for v in self.levels[b] if (w := self.step(a, lo, hi, ((b, v),))) is not None]
            rows += [w - at[0] for w in at[1:]]
        return np.array(rows).reshape(-1, len(self.rows))


def analyse(Y: np.ndarray, groups: np.ndarray, cells: pd.DataFrame, order: dict[str, Callable],
            alpha: float = verdicts.ALPHA, delta: float = verdicts.DELTA, comp: grid_model.Components | None = None,
            seed: int = 0) -> GridEstimates:
    """Cell means, interaction tests, answers and detail of a grid of per-example scores Y (C, S, N).

    cells: one row per cell of Y, a column per axis; order: each axis's sort key for its levels.
    `comp` replaces the accuracy components (e.g. estimate.components with a bootstrap test
    covariance, for macro-F1); Y then only gives its shape and groups the number of groups.
    """
    comp = comp or grid_model.accuracy_components(Y, groups)
    if len(cells) != len(comp.runs):
        raise ValueError(f"cells has {len(cells)} rows for {len(comp.runs)} cells of data")
    grid = Grid(cells, order, comp.n_runs > 0)
    inter, answers = answer_contrasts(comp, grid, alpha)
    return GridEstimates(cell_table(comp, grid, alpha, len(np.unique(groups))),
                         family(comp, answers, alpha, delta, seed), inter,
                         family(comp, grid.detail(), alpha, delta, seed))


def answer_contrasts(comp: grid_model.Components, grid: Grid, alpha: float = verdicts.ALPHA) -> tuple[pd.DataFrame, list[Contrast]]:
    """(interaction tests, the answers family): every axis's steps, plus per-level steps of interacting pairs."""
    inter = interactions(comp, grid, alpha)
    answers = grid.answers()
    for a, b, detected in zip(inter["axis_a"], inter["axis_b"], inter["detected"]):
        if detected:
            answers += grid.conditional(a, b) + grid.conditional(b, a)
    return inter, answers


def family(comp: grid_model.Components, contrasts: list[Contrast], alpha: float = verdicts.ALPHA, delta: float = verdicts.DELTA,
           seed: int = 0) -> pd.DataFrame:
    """One row per contrast (level_b minus level_a of `axis`, at `context` or averaged over it).

    estimate: the two-way model's contrast of cell means; se_seed, se_test, se: the standard
    errors of the seed part, the test part and their sum; df: Welch-Satterthwaite df of se;
    lo, hi: the contrast's own (1 - alpha) t-interval, on Fisher's atanh scale mapped back;
    p: its two-sided p; crit, lo_sim, hi_sim: the family's simultaneous (1 - alpha) max-t
    critical value and interval; p_family: the max-t adjusted p; seeds: runs per cell;
    seed_var1: the seed variance with one seed per cell (for `power`); verdict, from
    [lo_sim, hi_sim]; seeds_needed, test_multiple: the design that would decide an undecided one;
    p_run: the chance that one run of level_b beats one run of level_a (harness.stats.one_run, a
    normal approximation).
    """
    contrasts = [c for c in contrasts if grid_model.estimable(comp, c.weights)]  # cells that share no seed: left out
    if not contrasts:
        return pd.DataFrame()
    f = family_arrays(comp, np.stack([c.weights for c in contrasts]), alpha, seed)
    labels = {"axis": [c.axis for c in contrasts], "level_a": [c.level_a for c in contrasts],
              "level_b": [c.level_b for c in contrasts], "context": [c.context for c in contrasts]}
    table = pd.DataFrame(labels | {k: v for k, v in f.items() if k not in ("var_seed", "var_test", "level", "cov")})
    return table.assign(**_verdicts(f, comp.test_df, delta))


def _verdicts(f: dict, test_df: float, delta: float) -> dict[str, list]:
    out: dict[str, list] = {"verdict": [], "seeds_needed": [], "test_multiple": [], "seeds_for_this_effect": []}
    for i, (lo, hi, vs, vt, seeds, dfs) in enumerate(zip(f["lo_sim"], f["hi_sim"], f["var_seed"], f["var_test"],
                                                         f["seeds"], f["df_seed"])):
        v = verdicts.verdict(lo, hi, delta)
        s, m = verdicts.plan(vs, vt, seeds, dfs, test_df, f["level"], delta) if v == "undecided" else (math.nan, math.nan)
        # planning from the estimate itself is a guess (observed power, Hoenig & Heisey 2001): a table
        # column only, never the verdict's text
        n = verdicts.seeds_for_power(abs(f["estimate"][i]), f["seed_var1"][i], vt, f["crit"][i]) \
            if v == "undecided" and abs(f["estimate"][i]) >= delta and math.isfinite(f["seed_var1"][i]) else None
        out["verdict"].append(f"{v}: {verdicts.plan_text(s, m, seeds)}" if v == "undecided" else v)
        out["seeds_needed"].append(s)
        out["test_multiple"].append(m)
        out["seeds_for_this_effect"].append(n if n else math.nan)
    return out


def family_arrays(comp: grid_model.Components, W: np.ndarray, alpha: float = verdicts.ALPHA, seed: int = 0) -> dict:
    """The numbers of `family` for contrast weights W (K, C), as arrays (K,): no labels, no verdict text."""
    e = grid_model.contrasts(comp, W)
    se = e.se
    ok = np.isfinite(se) & (se > 0)  # exact (se 0) and unknown (one seed) estimates are not in the max
    corr = verdicts.correlation(e.cov[np.ix_(ok, ok)])
    top = verdicts.max_abs_draws(corr, seed=seed) if ok.sum() > 1 else None
    level = verdicts.family_level(corr, alpha, top)
    crit, crit_sim = verdicts.critical(alpha, e.df), verdicts.critical(level, e.df)
    lo, hi = verdicts.atanh_interval(e.estimate, se, crit)
    lo_sim, hi_sim = verdicts.atanh_interval(e.estimate, se, crit_sim)
    p = verdicts.atanh_p(e.estimate, se, e.df)
    p_family = p.copy()
    if top is not None:
        p_family[ok] = verdicts.family_p(p[ok], top)
    seeds = _seeds(comp, W)
    return {"estimate": e.estimate, "se_seed": np.sqrt(e.var_seed), "se_test": np.sqrt(e.var_test), "se": se,
            "df": e.df, "lo": lo, "hi": hi, "p": p, "crit": crit_sim, "lo_sim": lo_sim, "hi_sim": hi_sim,
            "p_family": p_family, "seeds": seeds, "seed_var1": e.var_seed * seeds, "df_seed": e.df_seed,
            "p_run": one_run.for_contrasts(comp, W, e.estimate, e.var_test),
            "var_seed": e.var_seed, "var_test": e.var_test, "level": level, "cov": e.cov}


def _seeds(comp: grid_model.Components, W: np.ndarray) -> np.ndarray:
    """Runs per cell of each contrast: the w^2-weighted harmonic mean over its cells (the seed part ~ 1 / this)."""
    n = comp.n_runs.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (W ** 2).sum(axis=1) / np.where(W != 0, W ** 2 / n, 0.0).sum(axis=1)


def interactions(comp: grid_model.Components, grid: Grid, alpha: float = verdicts.ALPHA) -> pd.DataFrame:
    """Wald F test per pair of axes that one's steps are equal at every level of the other; Holm over pairs."""
    pairs = grid.pairs()
    tests = [wald(comp, grid.interaction_rows(a, b)) for a, b in pairs]
    p_holm = np.asarray(verdicts.holm([t["p"] for t in tests]), dtype=float)
    return pd.DataFrame({"axis_a": [a for a, _ in pairs], "axis_b": [b for _, b in pairs],
                         **{k: [t[k] for t in tests] for k in ("F", "df1", "df2", "p")},
                         "p_holm": p_holm, "detected": p_holm < alpha})


def wald(comp: grid_model.Components, L: np.ndarray) -> dict:
    """Wald F = (L mu)' (L V L')^+ (L mu) / q on q = rank(L V L') components.

    Denominator df by Fai & Cornelius (1996): each principal component of L V L' is a single
    contrast with its own Satterthwaite df v_m; E = sum v_m / (v_m - 2), df = 2E / (E - q).
    """
    L = np.array([row for row in L if grid_model.estimable(comp, row)]).reshape(-1, L.shape[1])
    if len(L) == 0:
        return {"F": math.nan, "df1": 0, "df2": math.nan, "p": math.nan}
    e = grid_model.contrasts(comp, L)
    if not np.all(np.isfinite(e.cov)):
        return {"F": math.nan, "df1": len(L), "df2": math.nan, "p": math.nan}
    vals, vecs = np.linalg.eigh(e.cov)
    keep = vals > 1e-10 * max(vals.max(), 1e-300)
    q = int(keep.sum())
    P = vecs[:, keep]
    F = float(np.sum((P.T @ e.estimate) ** 2 / vals[keep]) / q)
    nu = grid_model.contrasts(comp, P.T @ L).df
    E = float(np.sum(nu / (nu - 2))) if np.all(nu > 2) else math.inf
    df2 = 2 * E / (E - q) if E > q else float(np.min(nu))
    return {"F": F, "df1": q, "df2": df2, "p": float(stats.f.sf(F, q, df2))}


def cell_table(comp: grid_model.Components, grid: Grid, alpha: float, n_groups: int) -> pd.DataFrame:
    """Each cell's mean over its runs with a per-cell (1 - alpha) interval in [0, 1] (logit scale)."""
    e = grid_model.cell_means(comp)
    lo, hi = verdicts.logit_interval(e.estimate, e.se, verdicts.critical(alpha, e.df), n_groups)
    return grid.cells.assign(runs=comp.n_runs, mean=e.estimate, se_seed=np.sqrt(e.var_seed),
                             se_test=np.sqrt(e.var_test), df=e.df, lo=lo, hi=hi)
