"""The grid model: one additive model of every run, a cell's and a contrast's variance in two parts.

Per-example scores Y[c, s, i] (1.0 right, 0.0 wrong; NaN for a run missing or left out) of seed
s of cell c on test example i. The run metric a[c, s] is fitted by a = mu_c + u_s + e (cell and
seed fixed effects, OLS), so paired seeds cancel from every contrast; each cell keeps its own
residual variance (the seed part). The test part is the cluster-robust (CR1) covariance of the
cell means over the test examples, clustered by review, from products of distinct runs only.
Total = seed part + test part, with Welch-Satterthwaite df. The derivation, the choices made
and the simulations that check them: docs/methods.md, "The grid model".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Components:
    """Everything a cell mean or a contrast needs, computed once per grid.

    A cell may hold several independent searches (replicates), each evaluated on the same seeds. The
    seed part is the runs' spread around their own search's effect; the search part is the spread of
    the searches' effects beyond that (zero and unknown with one search per cell: the intervals are then
    conditional on the hyperparameters each cell's search chose).
    """

    runs: np.ndarray  # (C, S) run metric, NaN where a run is missing
    coef_map: np.ndarray  # (C, R) OLS cell effects mu_hat = coef_map @ runs[observed] (searches weighed alike)
    run_cell: np.ndarray  # (R,) cell of each observed run, in np.nonzero(observed) order
    run_seed: np.ndarray  # (R,) its seed effect (runs of one seed number share it, whatever their search)
    run_sub: np.ndarray  # (R,) its search: an index into sub_cell
    sub_cell: np.ndarray  # (M,) the cell of each search
    resid_var: np.ndarray  # (M,) residual variance of each search's runs (the seed part)
    resid_df: np.ndarray  # (M,) its df
    resid_pooled: float  # the residual variance pooled over searches (a floor on the seed part's df weight)
    pooled_df: float  # two-way residual df; NaN with one run per search
    within_var: np.ndarray  # (C,) variance of each cell's runs around their own search's mean
    within_df: np.ndarray  # (C,) runs - searches
    within_pooled: float  # pooled over cells
    test_cov: np.ndarray  # (C, C) test-set covariance of the cell means
    test_df: float  # test groups - 1
    search_var: np.ndarray  # (C,) variance between a cell's searches beyond their seed noise (NaN: one search)
    search_pooled: float  # pooled over the cells that have two searches or more (NaN: none has)
    replicates: np.ndarray  # (C,) searches with kept runs per cell

    @property
    def observed(self) -> np.ndarray:
        return np.isfinite(self.runs)

    @property
    def n_runs(self) -> np.ndarray:
        """(C,) runs kept per cell."""
        return self.observed.sum(axis=1)

    @property
    def run_var(self) -> np.ndarray:
        """(R,) the seed variance of each observed run (its search's residual variance)."""
        return self.resid_var[self.run_sub]

    @property
    def search_df(self) -> np.ndarray:
        """(C,) df of each cell's search variance: searches - 1."""
        return np.maximum(self.replicates - 1, 0).astype(float)


def accuracy_components(Y: np.ndarray, groups: np.ndarray, variances: str = "cell",
                        replicates: np.ndarray | None = None, seeds: np.ndarray | None = None) -> Components:
    """Components of a grid from per-example scores Y (C, S, N); the metric is their mean (accuracy).

    replicates, seeds: (S,) the search and the seed number of each column (default: every column its
    own seed of search 0)."""
    Y = _checked(Y, groups)
    runs = Y.mean(axis=2)  # NaN for a missing run: runs are kept whole
    return components(runs, *cluster_covariance(Y, groups), variances=variances, replicates=replicates, seeds=seeds)


def components(runs: np.ndarray, test_cov: np.ndarray, test_df: float, variances: str = "cell",
               replicates: np.ndarray | None = None, seeds: np.ndarray | None = None) -> Components:
    """Components from any run metric (C, S) and its test covariance (analytic or bootstrap).

    variances: "cell" (each search its own seed variance) or "pooled" (one for all).
    replicates, seeds: (S,) the search and the seed number of each column, as ``accuracy_components``.
    """
    if variances not in ("cell", "pooled"):
        raise ValueError(f"variances must be 'cell' or 'pooled', got {variances!r}")
    runs = np.asarray(runs, dtype=float)
    S = runs.shape[1]
    replicates = np.zeros(S, dtype=int) if replicates is None else np.asarray(replicates, dtype=int)
    seeds = np.arange(S) if seeds is None else np.asarray(seeds)
    fit = two_way_fit(runs, replicates, seeds)
    sub_mean = np.bincount(fit.run_sub, fit.a, minlength=len(fit.sub_cell)) / fit.sub_n
    dev = fit.a - sub_mean[fit.run_sub]
    C = runs.shape[0]
    w_d = np.maximum(np.bincount(fit.run_cell, minlength=C) - np.bincount(fit.sub_cell, minlength=C), 0).astype(float)
    seed_part = _per_cell(fit.rss, fit.d, fit.df, variances)
    search_var, search_pooled, reps = _searches(fit, seed_part[0], C)
    return Components(runs, fit.coef_map, fit.run_cell, fit.run_seed, fit.run_sub, fit.sub_cell, *seed_part,
                      *_per_cell(np.bincount(fit.run_cell, dev ** 2, minlength=C), w_d, w_d.sum(), variances)[:3],
                      nearest_psd(test_cov), float(test_df), search_var, search_pooled, reps)


@dataclass(frozen=True)
class Fit:
    """The two-way OLS over the observed runs: search effects and seed effects."""

    a: np.ndarray  # (R,) the observed runs' metric
    run_cell: np.ndarray  # (R,)
    run_seed: np.ndarray  # (R,) seed-effect index
    run_sub: np.ndarray  # (R,) search index
    sub_cell: np.ndarray  # (M,) cell of each search
    sub_n: np.ndarray  # (M,) runs per search
    sub_map: np.ndarray  # (M, R) OLS search effects = sub_map @ a
    coef_map: np.ndarray  # (C, R) cell effects: the mean of the cell's search effects
    rss: np.ndarray  # (M,) residual sum of squares per search
    d: np.ndarray  # (M,) its share of the residual df: sum over its runs of (1 - leverage)
    df: float  # total residual df


def two_way_fit(runs: np.ndarray, replicates: np.ndarray | None = None, seeds: np.ndarray | None = None) -> Fit:
    """OLS of a[c, s] = m_(c, r(s)) + u_seed(s) + e over the observed runs (unbalanced allowed): an effect
    per search and one per seed number, shared by every cell and search that ran it. A cell's effect is
    the mean of its searches' effects."""
    C, S = runs.shape
    replicates = np.zeros(S, dtype=int) if replicates is None else np.asarray(replicates, dtype=int)
    seeds = np.arange(S) if seeds is None else np.asarray(seeds)
    cell, column = np.nonzero(np.isfinite(runs))
    subs, run_sub = np.unique(np.stack([cell, replicates[column]], axis=1), axis=0, return_inverse=True)
    run_sub = run_sub.reshape(-1)
    sub_cell = subs[:, 0] if len(subs) else np.zeros(0, dtype=int)
    seed = np.unique(seeds[column], return_inverse=True)[1].reshape(-1)  # seeds with no run drop out
    M = len(sub_cell)
    X = np.zeros((len(cell), M + seed.max(initial=0)))
    X[np.arange(len(cell)), run_sub] = 1.0
    X[np.flatnonzero(seed > 0), M + seed[seed > 0] - 1] = 1.0  # first seed is the baseline
    pinv = np.linalg.pinv(X)
    a = runs[cell, column]
    resid = a - X @ (pinv @ a)
    leverage = np.einsum("ij,ji->i", X, pinv)
    per_cell = np.bincount(sub_cell, minlength=C).astype(float)
    average = np.zeros((C, M))
    average[sub_cell, np.arange(M)] = 1.0 / np.maximum(per_cell[sub_cell], 1)
    df = len(cell) - np.linalg.matrix_rank(X) if len(cell) else 0
    return Fit(a, cell, seed, run_sub, sub_cell, np.bincount(run_sub, minlength=M).astype(float), pinv[:M],
               average @ pinv[:M], np.bincount(run_sub, resid ** 2, minlength=M),
               np.clip(np.bincount(run_sub, 1.0 - leverage, minlength=M), 0.0, None), float(df))


def _searches(fit: Fit, resid_var: np.ndarray, C: int) -> tuple[np.ndarray, float, np.ndarray]:
    """((C,) between-search variance beyond seed noise, its pooled value, (C,) searches per cell).

    Method of moments on each cell's R search effects m (sub_map @ a): E[sample variance of m] = search
    variance + tr(P V P) / (R - 1), V the covariance of m given the searches (sub_map diag(sigma^2)
    sub_map', seed noise only) and P the centring matrix; for a balanced cell this is the one-way
    ANOVA estimator (MS_search - MS_residual) / seeds (Searle, Casella & McCulloch 1992, ch. 3). Cut at
    0; the pooled value weighs the cells' uncut estimates by their df (searches - 1).
    """
    reps = np.bincount(fit.sub_cell, minlength=C)
    effects = fit.sub_map @ fit.a
    run_var = np.where(np.isfinite(resid_var), resid_var, 0.0)[fit.run_sub]
    raw = np.full(C, np.nan)
    for c in np.flatnonzero(reps >= 2):
        mine = fit.sub_cell == c
        rows = fit.sub_map[mine]  # (R, runs)
        V = (rows * run_var) @ rows.T
        R = len(V)
        P = np.eye(R) - 1.0 / R
        raw[c] = np.var(effects[mine], ddof=1) - np.trace(P @ V @ P) / (R - 1)
    has = np.isfinite(raw)
    pooled = max(float(np.sum((reps[has] - 1) * raw[has]) / np.sum(reps[has] - 1)), 0.0) if has.any() else math.nan
    return np.where(has, np.maximum(raw, 0.0), np.nan), pooled, reps


def _per_cell(rss: np.ndarray, d: np.ndarray, df_total: float, variances: str) -> tuple:
    """(per-unit variances, their df, pooled variance, pooled df); NaN throughout when df_total is 0.

    A unit (a search, or a cell) whose runs carry no residual df (a single run) borrows the pooled variance.
    """
    C = len(rss)
    if df_total < 0.5:  # one run per unit: no seed variance is estimable, say so with NaN
        return np.full(C, np.nan), np.full(C, np.nan), math.nan, math.nan
    pooled = float(rss.sum() / df_total)
    if variances == "pooled":
        return np.full(C, pooled), np.full(C, df_total), pooled, df_total
    has = d > 1e-9
    s2 = np.divide(rss, d, out=np.full(C, pooled), where=has)
    return s2, np.where(has, d, df_total), pooled, df_total


@dataclass(frozen=True)
class Estimates:
    """K estimates with their variance parts; se and df are of the total (seed + search + test)."""

    estimate: np.ndarray  # (K,)
    var_seed: np.ndarray  # (K,) NaN with one seed per search
    var_test: np.ndarray  # (K,)
    df_seed: np.ndarray  # (K,)
    df: np.ndarray  # (K,) Welch-Satterthwaite df of the total
    cov: np.ndarray  # (K, K) total covariance (seed + search + test)
    var_search: np.ndarray | None = None  # (K,) the searches' luck: 0 where every cell had one search

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(self.var_seed + self.var_test + self._search)

    @property
    def _search(self) -> np.ndarray:
        return np.zeros_like(self.var_test) if self.var_search is None else self.var_search

    @property
    def search_share(self) -> np.ndarray:
        """(K,) the part of the variance that the searches' luck contributes (NaN: not estimable)."""
        total = self.var_seed + self.var_test + self._search
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, self._search / total, np.nan)


def contrasts(comp: Components, W: np.ndarray) -> Estimates:
    """Contrasts W @ mu (W: (K, C), each row summing to 0) of the two-way model's cell effects."""
    W = np.atleast_2d(np.asarray(W, dtype=float))
    if np.any(np.abs(W.sum(axis=1)) > 1e-9):
        raise ValueError("contrast weights must sum to 0 (a single cell's mean is cell_means' job)")
    if np.any(W[:, comp.n_runs == 0] != 0):
        raise ValueError("a contrast puts weight on a cell with no kept run")
    H = W @ comp.coef_map  # (K, R): each contrast's OLS weights on the runs
    _check_estimable(comp, W, H)
    cov_seed = (H * comp.run_var) @ H.T
    share = (H ** 2) @ (comp.run_sub[:, None] == np.arange(len(comp.sub_cell)))  # (K, M): h^2 over a search's runs
    df_seed = np.minimum(satterthwaite(share * comp.resid_var, comp.resid_df), comp.pooled_df)
    return _combine(H @ comp.runs[comp.observed], cov_seed, W @ comp.test_cov @ W.T, df_seed, comp.test_df,
                    np.maximum(np.diag(cov_seed), share.sum(axis=1) * comp.resid_pooled), *_search_part(comp, W))


def _search_part(comp: Components, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cov, df, df weight) of the searches' luck in contrasts W: sum_c w_c^2 search_var_c / searches_c over
    the cells with two searches or more (independent between cells); Satterthwaite df over those cells,
    each weighed by the larger of its own and the pooled estimate, as the seed part is."""
    has = np.isfinite(comp.search_var) & (comp.replicates >= 2)
    per = np.where(has, comp.search_var / np.maximum(comp.replicates, 1), 0.0)  # (C,)
    cov = (W * per) @ W.T
    floor = np.where(has, np.maximum(comp.search_var, np.nan_to_num(comp.search_pooled)) /
                     np.maximum(comp.replicates, 1), 0.0)
    weight = W ** 2 * floor
    df = satterthwaite(weight, np.where(has, comp.search_df, 1.0))
    return cov, df, weight.sum(axis=1)


def estimable(comp: Components, w: np.ndarray) -> bool:
    """Whether contrast ``w`` can be estimated: its cells have runs and share seeds (directly or
    through other cells), so that seed and cell effects can be told apart."""
    w = np.asarray(w, dtype=float)
    if np.any(w[comp.n_runs == 0] != 0):
        return False
    try:
        _check_estimable(comp, w[None], w[None] @ comp.coef_map)
    except ValueError:
        return False
    return True


def _check_estimable(comp: Components, W: np.ndarray, H: np.ndarray) -> None:
    """An estimable contrast's run weights add up to w within each cell and to 0 within each seed.

    They do not when the cells compared share no seed (directly or through other cells): the
    seed effects then cannot be told apart from the cell effects.
    """
    for k, (w, h) in enumerate(zip(W, H)):
        by_cell = np.bincount(comp.run_cell, h, minlength=len(w))
        by_seed = np.bincount(comp.run_seed, h, minlength=comp.runs.shape[1])
        if not (np.allclose(by_cell, w, atol=1e-8) and np.allclose(by_seed, 0.0, atol=1e-8)):
            raise ValueError(f"contrast {k} is not estimable: its cells share no seed, so seed and cell "
                             "effects cannot be separated")


def cell_means(comp: Components) -> Estimates:
    """Each cell's mean over its searches' means; its seed part is the within-search variance over the
    runs (no seed cancels), its search part the between-search variance over the searches."""
    C = len(comp.runs)
    sub_n = np.bincount(comp.run_sub, minlength=len(comp.sub_cell)).astype(float)
    sub_mean = np.bincount(comp.run_sub, comp.runs[comp.observed], minlength=len(comp.sub_cell)) / np.maximum(sub_n, 1)
    reps = np.maximum(comp.replicates, 1).astype(float)
    mean = np.bincount(comp.sub_cell, sub_mean, minlength=C) / reps
    inverse = np.bincount(comp.sub_cell, 1.0 / np.maximum(sub_n, 1), minlength=C) / reps ** 2  # sum_r 1/n_r / R^2
    mean = np.where(comp.n_runs > 0, mean, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_seed, weight = comp.within_var * inverse, np.maximum(comp.within_var, comp.within_pooled) * inverse
    cov_test = np.diag(np.diag(comp.test_cov))  # seeds shared across cells make the seed parts correlate
    search = _search_part(comp, np.eye(C))
    return _combine(mean, np.diag(var_seed), cov_test, comp.within_df, comp.test_df, weight, *search)


def _combine(estimate, cov_seed, cov_test, df_seed, df_test, seed_weight, cov_search=None, df_search=None,
             search_weight=None) -> Estimates:
    """Total covariance, and Welch-Satterthwaite df with the seed and search parts weighed by their weights."""
    var_seed, var_test = np.diag(cov_seed).copy(), np.diag(cov_test).copy()
    if cov_search is None:
        cov_search, df_search, search_weight = np.zeros_like(cov_test), np.ones_like(var_test), np.zeros_like(var_test)
    df = satterthwaite(np.stack([seed_weight, var_test, search_weight], axis=-1),
                       np.stack([df_seed, np.full_like(var_seed, df_test), df_search], axis=-1))
    return Estimates(np.asarray(estimate, dtype=float), var_seed, var_test, np.asarray(df_seed, dtype=float),
                     df, cov_seed + cov_test + cov_search, np.diag(cov_search).copy())


def satterthwaite(parts: np.ndarray, dfs: np.ndarray) -> np.ndarray:
    """Df of a sum of independent variance estimates over the last axis: (sum v)^2 / sum v^2 / df.

    Satterthwaite (1946), Welch (1947). Parts that are 0 carry no uncertainty; all 0 gives inf.
    """
    parts = np.asarray(parts, dtype=float)
    dfs = np.broadcast_to(np.asarray(dfs, dtype=float), parts.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.where(parts > 0, parts ** 2 / dfs, 0.0).sum(axis=-1)
        total = parts.sum(axis=-1)
        out = np.where(den > 0, total ** 2 / den, np.inf)
    return np.where(np.isnan(total) | np.isnan(den), np.nan, out)


def cluster_covariance(Y: np.ndarray, groups: np.ndarray, distinct_runs: bool = True) -> tuple[np.ndarray, float]:
    """((C, C) covariance of the cell means over the test set, df = G - 1), clustered by `groups`.

    Per run r, the cluster sums U[r, g] = sum_{i in g} (Y[r, i] - mean_i Y[r, i]); the CR1
    covariance of two runs' means is G / (G - 1) * sum_g U[r, g] U[r', g] / N^2 (Liang & Zeger
    1986; statsmodels' OLS cov_type="cluster" with its default correction, K = 1). A cell mean
    averages its runs; with `distinct_runs` the products of a run with itself are left out of a
    cell's variance (the module docstring says why).
    """
    Y = _checked(Y, groups)
    C, S, N = Y.shape
    cell, seed = np.nonzero(~np.isnan(Y[..., 0])) if N else (np.zeros(0, int), np.zeros(0, int))
    runs = Y[cell, seed]  # (R, N)
    U = cluster_sums(runs - runs.mean(axis=1, keepdims=True), groups)  # (R, G)
    G = U.shape[1]
    scale = G / (G - 1) / N ** 2 if G > 1 else math.nan
    return cell_covariance(U, cell, C, scale, distinct_runs), float(G - 1)


def cluster_sums(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(R, G) sums of x (R, N) over the examples of each group (groups in sorted order)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = np.asarray(groups)[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    return np.add.reduceat(x[:, order], starts, axis=1) if x.size else np.zeros((len(x), len(starts)))


def cell_covariance(D: np.ndarray, run_cell: np.ndarray, C: int, scale: float,
                    distinct_runs: bool = True) -> np.ndarray:
    """(C, C) covariance of cell means from run deviations D (R, M): Cov(run r, run r') = scale D_r . D_r'.

    V[c, c'] = the mean of that over run pairs (r in c, r' in c'); with `distinct_runs`, a cell's
    own variance averages the pairs r != r' only, where the cell has two runs or more.
    """
    n = np.bincount(run_cell, minlength=C).astype(float)
    sums = np.zeros((C, D.shape[1]))
    np.add.at(sums, run_cell, D)  # (C, M): the runs of each cell summed
    with np.errstate(invalid="ignore", divide="ignore"):
        V = scale * (sums @ sums.T) / np.outer(n, n)
        if distinct_runs:
            own = scale * np.bincount(run_cell, (D ** 2).sum(axis=1), minlength=C)
            pairs = n * (n - 1)
            V[np.diag_indices(C)] = np.where(pairs > 0, (np.diag(V) * n ** 2 - own) / pairs, np.diag(V))
    return V


def bootstrap_covariance(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                          metric: Callable[[np.ndarray, np.ndarray], float], draws: int = 300, seed: int = 0,
                          distinct_runs: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """(runs (C, S), (C, C) test covariance, df = G - 1) of any metric by a cluster bootstrap over groups.

    pred (C, S, N) holds each run's predicted labels (or scores: ``metric`` gets them as floats), NaN
    for a missing run. Reviews are drawn
    with replacement, the same draw for every run (Field & Welsh 2007); the covariance of the
    runs' metrics over draws, times G / (G - 1) to match CR1, is combined into cells as in
    `cell_covariance`. For accuracy it approximates `cluster_covariance`.
    """
    pred, labels = np.asarray(pred, dtype=float), np.asarray(labels)
    cell, seed_ = np.nonzero(~np.isnan(pred[..., 0]))
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    G = len(members)
    runs = np.full(pred.shape[:2], np.nan)
    runs[cell, seed_] = [metric(labels, pred[c, s]) for c, s in zip(cell, seed_)]
    rng = np.random.default_rng(seed)
    boot = np.empty((draws, len(cell)))
    for b in range(draws):
        idx = np.concatenate([members[j] for j in rng.integers(0, G, G)])
        boot[b] = [metric(labels[idx], pred[c, s, idx]) for c, s in zip(cell, seed_)]
    D = (boot - boot.mean(axis=0)).T  # (R, draws)
    return runs, cell_covariance(D, cell, pred.shape[0], G / (G - 1) / (draws - 1), distinct_runs), float(G - 1)


def nearest_psd(V: np.ndarray) -> np.ndarray:
    """Symmetric V with negative eigenvalues set to 0 (the nearest PSD matrix in Frobenius norm,
    Higham 1988): leaving out a run's own products can make a cell difference's variance < 0."""
    V = np.where(np.isfinite(V), V, 0.0)
    vals, vecs = np.linalg.eigh((V + V.T) / 2)
    return (vecs * np.clip(vals, 0.0, None)) @ vecs.T


def _checked(Y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 3:
        raise ValueError(f"Y must be (cells, seeds, examples), got shape {Y.shape}")
    if len(groups) != Y.shape[2]:
        raise ValueError(f"groups has {len(groups)} entries for {Y.shape[2]} test examples")
    partial = np.isnan(Y).any(axis=2) & ~np.isnan(Y).all(axis=2)
    if partial.any():
        c, s = np.argwhere(partial)[0]
        raise ValueError(f"run (cell {c}, seed {s}) has NaN on some examples only: a run is kept whole or not")
    return Y
