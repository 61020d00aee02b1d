"""Small statistics the report needs beside the grid model: each a pure function citing its formula.

Everything scipy already does is delegated to scipy (the binomial test behind exact McNemar,
Wilson intervals, the Mann-Whitney U behind ROC-AUC). Written by hand, because scipy has no
function for them: Holm's step-down correction and the expected maximum over trials of Dodge
et al. (2019) with its variance. Effects between cells come from harness.estimate_grid.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson (1927) score interval for a proportion, e.g. the accuracy of one run on n test examples."""
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def proportion_se(p: float, n: int) -> float:
    """Binomial standard error sqrt(p (1 - p) / n) of an accuracy measured on n examples."""
    return math.sqrt(p * (1 - p) / n) if n else math.nan


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Binary ROC-AUC as the Mann-Whitney U of the positives over n_pos * n_neg (Hanley & McNeil 1982)."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    return float(stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and are not in the family.

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (m - j + 1) p_(j)). Written by hand:
    scipy.stats.false_discovery_control does Benjamini-Hochberg/Yekutieli only.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, float]:
    """(n01, n10, p): exact McNemar test on two models' per-example correctness (McNemar 1947).

    n01 = a wrong and b right, n10 = a right and b wrong; under H0 n01 ~ Binomial(n01 + n10, 1/2),
    so p is the two-sided binomial test (scipy.stats.binomtest). No discordant pairs: p = 1.
    """
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    n01, n10 = int(np.sum(~a & b)), int(np.sum(a & ~b))
    if n01 + n10 == 0:
        return n01, n10, 1.0
    return n01, n10, float(stats.binomtest(n01, n01 + n10, 0.5).pvalue)


def bits(correct: str) -> np.ndarray:
    """A stored '0'/'1' correctness string as a boolean array."""
    return np.frombuffer(correct.encode("ascii"), dtype=np.uint8) == ord("1")


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
