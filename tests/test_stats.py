"""harness.stats against scipy, brute force and published values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.records import decode_correct
from harness.stats import proportions, search, verdicts

# Lakens (2013), Frontiers in Psychology 4:863, table 1: ten raters, two movies; t(9) = 4.74, d_z = 1.50
MOVIE_1 = [9, 7, 8, 9, 8, 9, 9, 10, 9, 9]
MOVIE_2 = [9, 6, 7, 8, 7, 9, 8, 8, 8, 7]


@pytest.mark.parametrize("k, n, lo, hi", [  # Newcombe (1998), Stat Med 17:857, table I, method 3 (Wilson)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_newcombe(k, n, lo, hi):
    assert proportions.wilson_interval(k, n) == pytest.approx((lo, hi), abs=5e-5)


@pytest.mark.parametrize("p, want", [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),  # worked by hand: 4p, 3p, max(2p, prev), 1p
    ([0.5], [0.5]),
    ([0.01, math.nan, 0.02], [0.02, math.nan, 0.02]),  # NaN is outside the family of 2
    ([0.3, 0.4], [0.6, 0.6]),
])
def test_holm(p, want):
    assert verdicts.holm(p) == pytest.approx(want, nan_ok=True)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact McNemar p from its closed form: 2 sum_{i<=min} C(n, i) / 2^n, capped at 1."""
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n)


@pytest.mark.parametrize("n01, n10", [(9, 1), (0, 5), (3, 3), (12, 30), (0, 0)])
def test_mcnemar_exact_matches_binomial_sum(n01, n10):
    a = [False] * n01 + [True] * n10 + [True] * 7 + [False] * 4
    b = [True] * n01 + [False] * n10 + [True] * 7 + [False] * 4
    got = proportions.mcnemar_exact(a, b)
    assert got[:2] == (n01, n10)
    assert got[2] == pytest.approx(binomial_two_sided(n01, n01 + n10) if n01 + n10 else 1.0)


def test_bits():
    assert decode_correct("0110").tolist() == [False, True, True, False]


def test_expected_max_matches_enumeration():
    values = [0.61, 0.55, 0.70, 0.64]
    for n in (1, 2, 3):
        draws = list(itertools.product(values, repeat=n))
        assert search.expected_max(values, n) == pytest.approx(np.mean([max(d) for d in draws]))
    assert search.expected_max(values, 1) == pytest.approx(np.mean(values))
    assert search.expected_max(values, 200) == pytest.approx(max(values))


@pytest.mark.parametrize("n, expected, sd", [
    # sorted 0.55 0.61 0.64 0.70, weights (i/4)^n - ((i-1)/4)^n
    (1, 0.625, math.sqrt(1.5742 / 4 - 0.625 ** 2)),  # the mean, and the population sd of the four
    (2, 10.48 / 16, 0.045),  # weights 1, 3, 5, 7 / 16: E[max^2] = 6.8968 / 16 = 0.43105, minus 0.655^2
])
def test_expected_best_by_hand(n, expected, sd):
    out = search.expected_best([0.61, 0.55, 0.70, 0.64], n)
    assert out["expected"] == pytest.approx(expected) and out["sd"] == pytest.approx(sd)


def test_expected_best_sd_matches_enumeration():
    values = [0.61, 0.55, 0.70, 0.64, 0.58]
    for n in (1, 2, 3):
        maxima = [max(d) for d in itertools.product(values, repeat=n)]
        out = search.expected_best(values, n)
        assert (out["expected"], out["sd"]) == pytest.approx((np.mean(maxima), np.std(maxima)))


def test_expected_best_of_a_loss_is_the_expected_minimum():
    # nine ordered pairs from (0.5, 0.3, 0.4): minima sum to 3.2
    out = search.expected_best([0.5, 0.3, 0.4], 2, higher_is_better=False)
    assert out["expected"] == pytest.approx(3.2 / 9)
    assert out["sd"] == pytest.approx(np.std([0.5, 0.3, 0.4, 0.3, 0.3, 0.3, 0.4, 0.3, 0.4]))


def test_expected_best_curve_keeps_the_best_trial_apart():
    curve = search.expected_best_curve([0.61, 0.55, 0.70, 0.64])
    assert [c["trials"] for c in curve] == [1, 2, 3, 4]
    assert all(c["best_trial"] == 0.70 for c in curve)
    assert curve[-1]["expected"] == pytest.approx(search.expected_max([0.61, 0.55, 0.70, 0.64], 4))
    assert curve[-1]["expected"] < 0.70  # the expectation over 4 draws, not the best trial
    assert curve[0]["expected"] == pytest.approx(0.625)
    assert search.expected_best_curve([]) == [] and math.isnan(search.expected_best([], 3)["sd"])
    assert search.expected_best([0.7, 0.7], 5)["sd"] == 0.0


def test_roc_auc():
    assert proportions.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)  # sklearn's doc example
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 200), rng.random(200)
    pairs = [(p > q) + 0.5 * (p == q) for p in s[y == 1] for q in s[y == 0]]
    assert proportions.roc_auc(y, s) == pytest.approx(np.mean(pairs))
    assert math.isnan(proportions.roc_auc([1, 1], [0.2, 0.3]))
