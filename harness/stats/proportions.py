"""Proportions measured on n examples: the Wilson interval, a binomial standard error, ROC-AUC as a
Mann-Whitney U, and exact McNemar between two models on the same examples. Each delegates to scipy.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


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
