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
    context: str  # "" when averaged over the other axes, else e.g. "epochs=3", or "over grid=lab" for one set
    weights: np.ndarray  # (C,) over the grid's cells, summing to 0
    covers: str = ""  # the combinations of the other axes its average covers, in words


@dataclass(frozen=True)
class GridEstimates:
    """What `analyse` returns: one frame per question."""

    cells: pd.DataFrame  # each cell's mean over runs, se parts, df and own (1 - alpha) logit interval
    answers: pd.DataFrame  # `family` of the axes' steps (and per-level steps of interacting pairs)
    interactions: pd.DataFrame  # a Wald F test per pair of axes, Holm-adjusted p, detected
    detail: pd.DataFrame  # `family` of every adjacent pair of cells


class Grid:
    """The cells' axis values and which cells have runs, for building contrasts.

    Like with like: an axis's steps are averaged over the combinations of the other axes (contexts)
    that have runs at every level of the sequence, so each step of a sequence covers the same contexts;
    a grid of several blocks whose contexts hold different levels (a lab block with five data sizes, a
    fine-tuning block with three) gives one sequence per set of contexts, each saying what it covers.
    An interaction test, and the steps of one axis at each level of another, use only the contexts
    present at every level of the other axis.
    """

    def __init__(self, cells: pd.DataFrame, order: dict[str, Callable], present: np.ndarray):
        missing = [a for a in order if a not in cells.columns]
        if missing:
            raise ValueError(f"cells has no column for axis {missing[0]!r}")
        self.cells, self.axes, self.present = cells.reset_index(drop=True), list(order), np.asarray(present)
        self.rows = [tuple(r) for r in self.cells[self.axes].itertuples(index=False)]
        self.levels = {a: sorted(self.cells[a].unique(), key=order[a]) for a in self.axes}
        self.index = {row: i for i, row in enumerate(self.rows)}
        self._steps: dict = {}

    def step(self, axis: str, a, b, fixed: tuple = (), within: frozenset | None = None) -> np.ndarray | None:
        """Weights of the step a -> b of `axis`, averaged over the contexts that agree with `fixed`
        ((axis, value) pairs), lie `within` the given contexts (None: any), and have runs in both cells;
        None where no context has both."""
        key = (axis, a, b, fixed, within)
        if key not in self._steps:
            self._steps[key] = self._step(*key)
        return self._steps[key]

    def _step(self, axis: str, a, b, fixed: tuple, within: frozenset | None) -> np.ndarray | None:
        w, pairs = np.zeros(len(self.rows)), 0
        for row in self.contexts(axis):
            if any(row[self._other(axis, x)] != v for x, v in fixed) or (within is not None and row not in within):
                continue
            lo, hi = (self.at(axis, row, v) for v in (a, b))
            if lo is not None and hi is not None:
                w[lo], w[hi], pairs = w[lo] - 1, w[hi] + 1, pairs + 1
        return w / pairs if pairs else None

    def contexts(self, axis: str) -> list[tuple]:
        """Every combination of the other axes' levels that some cell has, in grid order."""
        k = self.axes.index(axis)
        return list(dict.fromkeys(r[:k] + r[k + 1:] for r in self.rows))

    def at(self, axis: str, context: tuple, level) -> int | None:
        """The cell with runs at `level` of `axis` in `context` (the other axes' levels), or None."""
        k = self.axes.index(axis)
        i = self.index.get(context[:k] + (level,) + context[k:])
        return i if i is not None and self.present[i] else None

    def _other(self, axis: str, x: str) -> int:
        """Position of axis x in a context tuple (the axes without `axis`)."""
        return [a for a in self.axes if a != axis].index(x)

    def steps(self, axis: str, fixed: tuple = (), within: frozenset | None = None, label: str = "",
              levels: list | None = None) -> list[Contrast]:
        levels = self.levels[axis] if levels is None else levels
        context = " ".join([f"{x}={v}" for x, v in fixed] + ([label] if label else []))
        covers = self.describe(axis, within, fixed)
        out = [Contrast(axis, a, b, context, self.step(axis, a, b, fixed, within), covers)
               for a, b in zip(levels, levels[1:])]
        return [c for c in out if c.weights is not None]

    def sets(self, axis: str) -> list[tuple[list, frozenset]]:
        """The contexts of `axis` grouped by the levels they have runs at (two levels or more), in grid order:
        (those levels, those contexts)."""
        found: dict[tuple, list] = {}
        for row in self.contexts(axis):
            have = tuple(v for v in self.levels[axis] if self.at(axis, row, v) is not None)
            if len(have) >= 2:
                found.setdefault(have, []).append(row)
        return [(list(levels), frozenset(rows)) for levels, rows in found.items()]

    def describe(self, axis: str, within: frozenset | None, fixed: tuple = ()) -> str:
        """The contexts a step covers in words: the other axes' levels they share, and how many they are."""
        rows = [r for r in self.contexts(axis) if within is None or r in within]
        rows = [r for r in rows if all(r[self._other(axis, x)] == v for x, v in fixed)]
        others = [x for x in self.axes if x != axis]
        shared = [f"{x}={rows[0][i]}" for i, x in enumerate(others) if rows and len({r[i] for r in rows}) == 1
                  and x not in dict(fixed)]
        return f"{len(rows)} combination{'s' if len(rows) != 1 else ''} of the other axes" + \
            (f" ({' '.join(shared)})" if shared else "")

    def answers(self) -> list[Contrast]:
        out = []
        for axis in self.axes:
            sets = self.sets(axis)
            for levels, rows in sets:
                label = "" if len(sets) == 1 else f"over {self.describe(axis, rows).split(' (', 1)[-1].rstrip(')')}"
                out += self.steps(axis, within=rows, label=label, levels=levels)
        return out

    def like(self, axis: str, lo, hi, by: str) -> frozenset:
        """The contexts of `axis` whose remaining axes (all but `axis` and `by`) have runs at both `lo` and
        `hi` at every level of `by`: where steps at the levels of `by` compare like with like."""
        j = self._other(axis, by)
        good = set()
        for row in self.contexts(axis):
            rest = row[:j] + row[j + 1:]
            if all(self.at(axis, rest[:j] + (v,) + rest[j:], x) is not None for v in self.levels[by] for x in (lo, hi)):
                good.add(row)
        return frozenset(good)

    def conditional(self, axis: str, by: str) -> list[Contrast]:
        """Steps of `axis` at each level of `by` (averaged over the remaining axes, like with like)."""
        out = []
        for v in self.levels[by]:
            for lo, hi in zip(self.levels[axis], self.levels[axis][1:]):
                within = self.like(axis, lo, hi, by)
                out += self.steps(axis, ((by, v),), within, levels=[lo, hi]) if within else []
        return out

    def detail(self) -> list[Contrast]:
        """Every adjacent pair of cells: one axis steps, the others fixed."""
        out = []
        for axis in self.axes:
            others = [x for x in self.axes if x != axis]
            for context in self.contexts(axis):
                out += self.steps(axis, tuple(zip(others, context)))
        return out

    def pairs(self) -> list[tuple[str, str]]:
        multi = [a for a in self.axes if len(self.levels[a]) >= 2]
        return [(a, b) for i, a in enumerate(multi) for b in multi[i + 1:]]

    def interaction_rows(self, a: str, b: str) -> np.ndarray:
        """(q, C): each step of a at each level of b, minus that step at the first level of b, over the contexts
        present at every level of b (like with like; ``like``)."""
        rows = []
        for lo, hi in zip(self.levels[a], self.levels[a][1:]):
            within = self.like(a, lo, hi, b)
            at = [w for v in self.levels[b] if within and (w := self.step(a, lo, hi, ((b, v),), within)) is not None]
            rows += [w - at[0] for w in at[1:]]
        return np.array(rows).reshape(-1, len(self.rows))


def analyse(Y: np.ndarray, groups: np.ndarray, cells: pd.DataFrame, order: dict[str, Callable],
            alpha: float = verdicts.ALPHA, delta: float = verdicts.DELTA, comp: grid_model.Components | None = None,
            seed: int = 0, replicates: np.ndarray | None = None, seeds: np.ndarray | None = None) -> GridEstimates:
    """Cell means, interaction tests, answers and detail of a grid of per-example scores Y (C, S, N).

    cells: one row per cell of Y, a column per axis; order: each axis's sort key for its levels.
    `comp` replaces the accuracy components (e.g. estimate.components with a bootstrap test
    covariance, for macro-F1); Y then only gives its shape and groups the number of groups.
    """
    jack = None if comp is not None else Y  # the accuracy's test part: its uncertainty by a jackknife over runs
    comp = comp or grid_model.accuracy_components(Y, groups, replicates=replicates, seeds=seeds)
    if len(cells) != len(comp.runs):
        raise ValueError(f"cells has {len(cells)} rows for {len(comp.runs)} cells of data")
    grid = Grid(cells, order, comp.n_runs > 0)
    inter, answers = answer_contrasts(comp, grid, alpha)
    return GridEstimates(cell_table(comp, grid, alpha, len(np.unique(groups))),
                         family(comp, answers, alpha, delta, seed, jack, groups), inter,
                         family(comp, grid.detail(), alpha, delta, seed, jack, groups))


def test_variance_se(Y: np.ndarray, groups: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, float]:
    """((K,) jackknife se of each contrast's test-part variance w' V w, its df): one column of runs left out
    at a time (Efron & Stein 1981): with few runs per cell the estimate rests on few pairs of runs and moves
    with them."""
    Y = np.asarray(Y, dtype=float)
    columns = [j for j in range(Y.shape[1]) if np.isfinite(Y[:, j, 0]).any()] if Y.shape[2] else []
    if len(columns) < 3:
        return np.full(len(W), np.nan), math.inf
    values = []
    for j in columns:
        rest = Y.copy()
        rest[:, j] = np.nan
        V = grid_model.nearest_psd(grid_model.cluster_covariance(rest, groups)[0])
        values.append(np.einsum("kc,cd,kd->k", W, V, W))
    values = np.array(values)
    J = len(values)
    return np.sqrt((J - 1) / J * ((values - values.mean(axis=0)) ** 2).sum(axis=0)), float(J - 1)


def answer_contrasts(comp: grid_model.Components, grid: Grid, alpha: float = verdicts.ALPHA) -> tuple[pd.DataFrame, list[Contrast]]:
    """(interaction tests, the answers family): every axis's steps, plus per-level steps of interacting pairs."""
    inter = interactions(comp, grid, alpha)
    answers = grid.answers()
    for a, b, detected in zip(inter["axis_a"], inter["axis_b"], inter["detected"]):
        if detected:
            answers += grid.conditional(a, b) + grid.conditional(b, a)
    return inter, distinct(answers)


def distinct(found: list[Contrast]) -> list[Contrast]:
    """The contrasts with weights no earlier one has: a per-level step that is an averaged step already (its
    level holds the step's only contexts) is one comparison, and counts once in the family."""
    out: list[Contrast] = []
    for c in found:
        if not any(np.allclose(c.weights, d.weights, atol=1e-12) for d in out):
            out.append(c)
    return out


def family(comp: grid_model.Components, contrasts: list[Contrast], alpha: float = verdicts.ALPHA,
           delta: float = verdicts.DELTA, seed: int = 0, Y: np.ndarray | None = None,
           groups: np.ndarray | None = None) -> pd.DataFrame:
    """One row per contrast (level_b minus level_a of `axis`, at `context` or averaged over it).

    estimate: the two-way model's contrast of cell means; se_seed, se_test, se: the standard
    errors of the seed part, the test part and their sum; df: Welch-Satterthwaite df of se;
    lo, hi: the contrast's own (1 - alpha) t-interval, on Fisher's atanh scale mapped back;
    p: its two-sided p; crit, lo_sim, hi_sim: the family's simultaneous (1 - alpha) max-t
    critical value and interval; p_family: the max-t adjusted p; seeds: runs per cell;
    seed_var1: the seed variance with one seed per cell (for `power`); verdict, from
    [lo_sim, hi_sim]; seeds_needed, test_multiple: the design that would decide an undecided one, and
    its range over the test part's 90% range (``Y``, ``groups``: the per-example data, for a jackknife of
    the test part; without them its chi-square range over the groups alone); p_run: the chance that one
    run of level_b (one search, one seed) beats one run of level_a (harness.stats.one_run, a normal
    approximation).
    """
    contrasts = [c for c in contrasts if grid_model.estimable(comp, c.weights)]  # cells that share no seed: left out
    if not contrasts:
        return pd.DataFrame()
    f = family_arrays(comp, np.stack([c.weights for c in contrasts]), alpha, seed)
    labels = {"axis": [c.axis for c in contrasts], "level_a": [c.level_a for c in contrasts],
              "level_b": [c.level_b for c in contrasts], "context": [c.context for c in contrasts],
              "covers": [c.covers for c in contrasts]}
    W = np.stack([c.weights for c in contrasts])
    se, df = test_variance_se(Y, groups, W) if Y is not None else (np.full(len(W), np.nan), math.inf)
    f["test_lo"], f["test_hi"] = verdicts.test_range(f["var_test"], se, comp.test_df, df_estimate=df)
    table = pd.DataFrame(labels | {k: v for k, v in f.items()
                                   if k not in ("var_seed", "var_test", "var_search", "level", "cov", "test_lo",
                                                "test_hi")})
    return table.assign(**_verdicts(f, comp.test_df, delta))


def _verdicts(f: dict, test_df: float, delta: float) -> dict[str, list]:
    out: dict[str, list] = {"verdict": [], "seeds_needed": [], "test_multiple": [], "seeds_for_this_effect": []}
    for i, (lo, hi, vs, vt, seeds, dfs) in enumerate(zip(f["lo_sim"], f["hi_sim"], f["var_seed"], f["var_test"],
                                                         f["seeds"], f["df_seed"])):
        v = verdicts.verdict(lo, hi, delta)
        at = [verdicts.plan(vs, x, seeds, dfs, test_df, f["level"], delta, f["var_search"][i])
              for x in (vt, f["test_lo"][i], f["test_hi"][i])] if v == "undecided" else [(math.nan, math.nan)] * 3
        s, m = at[0]
        # planning from the estimate itself is a guess (observed power, Hoenig & Heisey 2001): a table
        # column only, never the verdict's text
        n = verdicts.seeds_for_power(abs(f["estimate"][i]), f["seed_var1"][i], vt, f["crit"][i]) \
            if v == "undecided" and abs(f["estimate"][i]) >= delta and math.isfinite(f["seed_var1"][i]) else None
        out["verdict"].append(f"{v}: {verdicts.plan_text(s, m, seeds, at[1], at[2])}" if v == "undecided" else v)
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
            "var_seed": e.var_seed, "var_test": e.var_test, "level": level, "cov": e.cov,
            "se_search": np.sqrt(e.var_search), "search_share": e.search_share, "var_search": e.var_search,
            "p_run": one_run.for_contrasts(comp, W, e.estimate, e.var_test)}


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
    return grid.cells.assign(runs=comp.n_runs, searches=comp.replicates, mean=e.estimate, se_seed=np.sqrt(e.var_seed),
                             se_test=np.sqrt(e.var_test), se_search=np.sqrt(e.var_search),
                             search_share=e.search_share, df=e.df, lo=lo, hi=hi)
