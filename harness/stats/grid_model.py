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
    """Everything a cell mean or a contrast needs, computed once per grid."""

    runs: np.ndarray  # (C, S) run metric, NaN where a run is missing
    coef_map: np.ndarray  # (C, R) OLS cell effects mu_hat = coef_map @ runs[observed]; contrasts only
    run_cell: np.ndarray  # (R,) cell of each observed run, in np.nonzero(observed) order
    run_seed: np.ndarray  # (R,) its seed (column of runs)
    resid_var: np.ndarray  # (C,) two-way residual variance of each cell's runs
    resid_df: np.ndarray  # (C,) its df
    resid_pooled: float  # the residual variance pooled over cells (a floor on the seed part's df weight)
    pooled_df: float  # runs - cells - seeds + 1 (two-way residual df); NaN with one seed per cell
    within_var: np.ndarray  # (C,) variance of each cell's runs around their mean
    within_df: np.ndarray  # (C,) runs - 1
    within_pooled: float  # pooled over cells
    test_cov: np.ndarray  # (C, C) test-set covariance of the cell means
    test_df: float  # test groups - 1

    @property
    def observed(self) -> np.ndarray:
        return np.isfinite(self.runs)

    @property
    def n_runs(self) -> np.ndarray:
        """(C,) runs kept per cell."""
        return self.observed.sum(axis=1)


def accuracy_components(Y: np.ndarray, groups: np.ndarray, variances: str = "cell") -> Components:
    """Components of a grid from per-example scores Y (C, S, N); the metric is their mean (accuracy)."""
    Y = _checked(Y, groups)
    runs = Y.mean(axis=2)  # NaN for a missing run: runs are kept whole
    return components(runs, *cluster_covariance(Y, groups), variances=variances)


def components(runs: np.ndarray, test_cov: np.ndarray, test_df: float, variances: str = "cell") -> Components:
    """Components from any run metric (C, S) and its test covariance (analytic or bootstrap).

    variances: "cell" (each cell its own seed variance) or "pooled" (one for all cells).
    """
    if variances not in ("cell", "pooled"):
        raise ValueError(f"variances must be 'cell' or 'pooled', got {variances!r}")
    runs = np.asarray(runs, dtype=float)
    coef_map, run_cell, run_seed, rss, d, df_total = two_way_fit(runs)
    n = np.isfinite(runs).sum(axis=1)
    dev = np.where(n[:, None] > 0, runs - _mean_of_runs(runs)[:, None], np.nan)
    w_d = np.maximum(n - 1, 0).astype(float)
    return Components(runs, coef_map, run_cell, run_seed, *_per_cell(rss, d, df_total, variances),
                      *_per_cell(np.nansum(dev ** 2, axis=1), w_d, w_d.sum(), variances)[:3],
                      nearest_psd(test_cov), float(test_df))


def _mean_of_runs(runs: np.ndarray) -> np.ndarray:
    """(C,) mean of each cell's kept runs; NaN for a cell without one."""
    n = np.isfinite(runs).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(runs), runs, 0.0).sum(axis=1) / n


def two_way_fit(runs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """OLS of a[c, s] = mu_c + u_s + e over the observed runs (unbalanced allowed).

    Returns (coef_map (C, R), run_cell (R,), run_seed (R,), residual sum of squares per cell,
    its share of the residual df per cell = sum over the cell's runs of (1 - leverage), total
    residual df).
    """
    C = runs.shape[0]
    cell, column = np.nonzero(np.isfinite(runs))
    seed = np.unique(column, return_inverse=True)[1]  # seeds with no run drop out
    X = np.zeros((len(cell), C + seed.max(initial=0)))
    X[np.arange(len(cell)), cell] = 1.0
    X[np.flatnonzero(seed > 0), C + seed[seed > 0] - 1] = 1.0  # first seed is the baseline
    pinv = np.linalg.pinv(X)
    a = runs[cell, column]
    resid = a - X @ (pinv @ a)
    leverage = np.einsum("ij,ji->i", X, pinv)
    rss = np.bincount(cell, resid ** 2, minlength=C)
    share = np.bincount(cell, 1.0 - leverage, minlength=C)
    df = len(cell) - np.linalg.matrix_rank(X) if len(cell) else 0
    return pinv[:C], cell, column, rss, np.clip(share, 0.0, None), float(df)


def _per_cell(rss: np.ndarray, d: np.ndarray, df_total: float, variances: str) -> tuple:
    """(per-cell variances, their df, pooled variance, pooled df); NaN throughout when df_total is 0.

    A cell whose runs carry no residual df (a single run) borrows the pooled variance.
    """
    C = len(rss)
    if df_total < 0.5:  # one run per cell: no seed variance is estimable, say so with NaN
        return np.full(C, np.nan), np.full(C, np.nan), math.nan, math.nan
    pooled = float(rss.sum() / df_total)
    if variances == "pooled":
        return np.full(C, pooled), np.full(C, df_total), pooled, df_total
    has = d > 1e-9
    s2 = np.divide(rss, d, out=np.full(C, pooled), where=has)
    return s2, np.where(has, d, df_total), pooled, df_total


@dataclass(frozen=True)
class Estimates:
    """K estimates with their variance parts; se and df are of the total (seed + test)."""

    estimate: np.ndarray  # (K,)
    var_seed: np.ndarray  # (K,) NaN with one seed per cell
    var_test: np.ndarray  # (K,)
    df_seed: np.ndarray  # (K,)
    df: np.ndarray  # (K,) Welch-Satterthwaite df of the total
    cov: np.ndarray  # (K, K) total covariance (seed + test)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(self.var_seed + self.var_test)


def contrasts(comp: Components, W: np.ndarray) -> Estimates:
    """Contrasts W @ mu (W: (K, C), each row summing to 0) of the two-way model's cell effects."""
    W = np.atleast_2d(np.asarray(W, dtype=float))
    if np.any(np.abs(W.sum(axis=1)) > 1e-9):
        raise ValueError("contrast weights must sum to 0 (a single cell's mean is cell_means' job)")
    if np.any(W[:, comp.n_runs == 0] != 0):
        raise ValueError("a contrast puts weight on a cell with no kept run")
    H = W @ comp.coef_map  # (K, R): each contrast's OLS weights on the runs
    _check_estimable(comp, W, H)
    cov_seed = (H * comp.resid_var[comp.run_cell]) @ H.T
    share = (H ** 2) @ (comp.run_cell[:, None] == np.arange(W.shape[1]))  # (K, C): sum of h^2 over a cell's runs
    df_seed = np.minimum(satterthwaite(share * comp.resid_var, comp.resid_df), comp.pooled_df)
    return _combine(H @ comp.runs[comp.observed], cov_seed, W @ comp.test_cov @ W.T, df_seed, comp.test_df,
                    np.maximum(np.diag(cov_seed), share.sum(axis=1) * comp.resid_pooled))


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
    """Each cell's mean over its runs; its seed part is the within-cell variance / runs (no seed cancels)."""
    n = comp.n_runs.astype(float)
    mean = _mean_of_runs(comp.runs)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_seed, weight = comp.within_var / n, np.maximum(comp.within_var, comp.within_pooled) / n
    cov_test = np.diag(np.diag(comp.test_cov))  # seeds shared across cells make the seed parts correlate
    return _combine(mean, np.diag(var_seed), cov_test, comp.within_df, comp.test_df, weight)


def _combine(estimate, cov_seed, cov_test, df_seed, df_test, seed_weight) -> Estimates:
    """Total covariance, and Welch-Satterthwaite df with the seed part weighed by `seed_weight`."""
    var_seed, var_test = np.diag(cov_seed).copy(), np.diag(cov_test).copy()
    df = satterthwaite(np.stack([seed_weight, var_test], axis=-1),
                       np.stack([df_seed, np.full_like(var_seed, df_test)], axis=-1))
    return Estimates(np.asarray(estimate, dtype=float), var_seed, var_test, np.asarray(df_seed, dtype=float),
                     df, cov_seed + cov_test)


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
