"""What a hyperparameter search found: the expected best of k trials and its spread (Dodge et al. 2019).

Written by hand: no library computes the order-statistic expectation over the observed trials.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _max_weights(count: int, n: int) -> np.ndarray:
    """P(max of n draws with replacement = the i-th smallest of `count` values) = (i/N)^n - ((i-1)/N)^n."""
    i = np.arange(1, count + 1)
    return (i / count) ** n - ((i - 1) / count) ** n


def expected_max(values: Sequence[float], n: int) -> float:
    """Expected best of n trials drawn with replacement from the observed ones (Dodge et al. 2019, eq. 1).

    With v_(1) <= ... <= v_(N) sorted, P(max = v_(i)) = (i/N)^n - ((i-1)/N)^n.
    """
    return expected_best(values, n)["expected"]


def expected_best(values: Sequence[float], n: int, higher_is_better: bool = True) -> dict:
    """Expected best of n trials and its standard deviation (Dodge et al. 2019, "Show your work").

    The n trials are drawn with replacement from the N observed trial values; with the order-statistic
    weights w_i of ``_max_weights``, E[max] = sum w_i v_(i) and Var[max] = sum w_i v_(i)^2 - E[max]^2
    (Dodge et al. report the expectation with this variance as a band). For a loss (lower is better)
    the best is the minimum, computed as the maximum of -v. NaN for no values.
    """
    sign = 1.0 if higher_is_better else -1.0
    v = np.sort(sign * np.asarray(values, dtype=float))
    if len(v) == 0:
        return {"expected": math.nan, "sd": math.nan}
    w = _max_weights(len(v), n)
    mean = float(np.sum(w * v))
    var = max(0.0, float(np.sum(w * v ** 2)) - mean ** 2)  # rounding can leave -1e-17 when all weight is on one value
    return {"expected": sign * mean, "sd": math.sqrt(var)}


def expected_best_curve(values: Sequence[float], higher_is_better: bool = True) -> list[dict]:
    """For k = 1..N: the expected best of k trials and its sd, beside the best single trial observed.

    ``best_trial`` is the best value actually reached (not an expectation); ``expected`` at k = N is
    the expectation over N draws with replacement and lies below it whenever the values differ.
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return []
    best = float(v.max() if higher_is_better else v.min())
    return [{"trials": k, **expected_best(v, k, higher_is_better), "best_trial": best} for k in range(1, len(v) + 1)]
