"""For a practitioner who trains once: the chance that one run of configuration B beats one run of A.

A contrast of cells (weights w, summing to 0: B's cells positive, A's negative) estimates the mean
difference D. One run of each differs by D plus each run's own deviation from its cell's mean (the
cells' seed spreads, which on a test set include each run's luck on single examples) plus the test
set's sampling of D itself. In a normal approximation (stated as such wherever it is shown):

    P(run of B > run of A) = Phi(D / sqrt(sum_c |w_c| sigma_c^2 + var_test))

sigma_c^2 the variance of one run of cell c around the cell's mean: its seed variance around its own
search plus, where the cell ran two searches or more, the searches' variance (whoever trains once
also tunes once); sum |w_c| sigma_c^2 is the sum of the two
sides' run variances, averaged over the pairs of cells a step averages (w = +-1/k over k pairs);
var_test the contrast's test part. Plugged-in estimates: checked against simulated pairs of fresh
runs on fresh test sets in tests/test_one_run.py.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from harness.stats import grid_model


def spread(comp: grid_model.Components, W: np.ndarray) -> np.ndarray:
    """(K,) variance of one run of B minus one run of A for each contrast row of W (K, C): sum |w| sigma^2.

    sigma_c^2: the cell's runs' variance around their search's mean (a cell with one run borrows the pooled
    one), plus its between-search variance where it has two searches or more (else none is known: 0).
    """
    W = np.atleast_2d(np.asarray(W, dtype=float))
    sigma2 = np.where(np.isfinite(comp.within_var), comp.within_var, comp.within_pooled)
    sigma2 = sigma2 + np.where(np.isfinite(comp.search_var), comp.search_var, 0.0)
    return np.abs(W) @ np.where(W.any(axis=0), sigma2, 0.0)


def beats(difference: np.ndarray, run_var: np.ndarray, var_test: np.ndarray) -> np.ndarray:
    """P(run of B > run of A) = Phi(D / sqrt(run_var + var_test)); NaN where the variance is unknown."""
    d, v = np.asarray(difference, dtype=float), np.asarray(run_var, dtype=float) + np.asarray(var_test, dtype=float)
    exact = np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))  # no spread at all: the sign decides
    p = stats.norm.cdf(d / np.sqrt(np.where(v > 0, v, 1.0)))
    return np.where(np.isnan(v) | np.isnan(d), np.nan, np.where(v > 0, p, exact))


def for_contrasts(comp: grid_model.Components, W: np.ndarray, difference: np.ndarray,
                  var_test: np.ndarray) -> np.ndarray:
    """(K,) P(run of B > run of A) for contrasts W with estimates `difference` and test parts `var_test`."""
    return beats(difference, spread(comp, W), var_test)
