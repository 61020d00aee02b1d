"""Per-example paired differences within cells, simultaneous over the cells.

D[c, s, i] = a - b for run s of cell c on test example i: a cell's correctness minus a fixed
answer key's (the majority-class baseline: label == majority, the same for every run), or one run
evaluated twice (its last epoch's weights minus its restored epoch's). A cell's mean difference
has a seed part (its runs' mean differences: variance / runs) and a test part (the cluster-robust
covariance of the cells' mean differences over the examples, clustered by group, from products of
distinct runs), as harness.stats.grid_model gives a cell mean; Welch-Satterthwaite df. Intervals
are simultaneous over the cells (and their pooled mean) by max-t with the estimates' correlation
(harness.stats.verdicts), on the atanh scale. Details: docs/methods.md, "Paired differences".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.stats import grid_model, verdicts


def differences(D: np.ndarray, groups: np.ndarray, alpha: float = verdicts.ALPHA, delta: float = verdicts.DELTA,
                pooled: bool = False, distinct_runs: bool = True, seed: int = 0) -> pd.DataFrame:
    """One row per cell with a kept run (NaN runs are left out), and a last row "pooled" when asked.

    D: (C, S, N) per-example differences, NaN for a whole run that is missing. Columns: cell (its
    index in D, -1 for pooled), runs, estimate, var_seed, var_test, se, df, lo, hi (the estimate's
    own 1 - alpha interval), p, crit, lo_sim, hi_sim (simultaneous over the rows), p_family,
    verdict (harness.stats.verdicts.verdict of the simultaneous interval, margin delta). The pooled
    row is the unweighted mean over the cells: each configuration counts once.
    """
    runs = np.isfinite(np.asarray(D, dtype=float)[..., 0]).sum(axis=1) if D.shape[2] else np.zeros(len(D), int)
    has = np.flatnonzero(runs > 0)
    if not len(has):
        return pd.DataFrame()
    D = np.asarray(D, dtype=float)[has]
    cov, test_df = grid_model.cluster_covariance(D, groups, distinct_runs)
    comp = grid_model.components(D.mean(axis=2), cov, test_df)  # run means: NaN for a missing run
    e = grid_model.cell_means(comp)
    E = np.eye(len(has))  # the estimates as weights on the cells
    if pooled:
        E = np.vstack([E, np.full(len(has), 1 / len(has))])
    var_seed = (E ** 2) @ e.var_seed  # seed parts of distinct cells: independent
    cov_total = E @ (np.diag(e.var_seed) + comp.test_cov) @ E.T
    var_test = np.diag(E @ comp.test_cov @ E.T)
    weights = np.maximum(comp.within_var, comp.within_pooled) / comp.n_runs  # as grid_model.cell_means weighs
    parts = np.column_stack([(E ** 2) * weights[None, :], var_test])
    dfs = np.concatenate([comp.within_df.astype(float), [test_df]])
    df = grid_model.satterthwaite(parts, dfs)
    estimate = E @ e.estimate
    return _family(estimate, var_seed, var_test, df, cov_total, alpha, delta, seed).assign(
        cell=np.concatenate([has, [-1]]) if pooled else has,
        runs=np.concatenate([runs[has], [runs[has].sum()]]) if pooled else runs[has])


def _family(estimate: np.ndarray, var_seed: np.ndarray, var_test: np.ndarray, df: np.ndarray, cov: np.ndarray,
            alpha: float, delta: float, seed: int) -> pd.DataFrame:
    """Own and simultaneous (max-t) intervals, p-values and verdicts of K estimates."""
    se = np.sqrt(var_seed + var_test)
    ok = np.isfinite(se) & (se > 0)  # exact (se 0) and unknown (one seed) estimates are not in the max
    corr = verdicts.correlation(cov[np.ix_(ok, ok)]) if ok.any() else np.zeros((0, 0))
    top = verdicts.max_abs_draws(corr, seed=seed) if ok.sum() > 1 else None
    level = verdicts.family_level(corr, alpha, top) if ok.any() else alpha
    lo, hi = verdicts.atanh_interval(estimate, se, verdicts.critical(alpha, df))
    crit = verdicts.critical(level, df)
    lo_sim, hi_sim = verdicts.atanh_interval(estimate, se, crit)
    p = verdicts.atanh_p(estimate, se, df)
    p_family = p.copy()
    if top is not None:
        p_family[ok] = verdicts.family_p(p[ok], top)
    return pd.DataFrame({"estimate": estimate, "var_seed": var_seed, "var_test": var_test, "se": se, "df": df,
                         "lo": lo, "hi": hi, "p": p, "crit": crit, "lo_sim": lo_sim, "hi_sim": hi_sim,
                         "p_family": p_family,
                         "verdict": [verdicts.verdict(a, b, delta) for a, b in zip(lo_sim, hi_sim)]})


def against_key(Y: np.ndarray, key: np.ndarray, groups: np.ndarray, alpha: float = verdicts.ALPHA,
                delta: float = verdicts.DELTA, distinct_runs: bool = True) -> pd.DataFrame:
    """Each cell's accuracy minus a fixed answer key's on the same examples (``key``: (N,) 1.0 where the
    key is right, e.g. labels == majority class), paired per example; `differences` over the cells."""
    return differences(np.asarray(Y, dtype=float) - np.asarray(key, dtype=float)[None, None, :], groups, alpha,
                       delta, distinct_runs=distinct_runs)
