"""harness.stats against scipy, brute force and published values."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest
from scipy import stats as sps

from harness import stats

# Lakens (2013), Frontiers in Psychology 4:863, table 1: ten raters, two movies; t(9) = 4.74, d_z = 1.50
MOVIE_1 = [9, 7, 8, 9, 8, 9, 9, 10, 9, 9]
MOVIE_2 = [9, 6, 7, 8, 7, 9, 8, 8, 8, 7]


def test_mean_ci_matches_scipy_t_interval():
    x = [0.81, 0.84, 0.79, 0.86, 0.83]
    mean, sd, lo, hi = stats.mean_ci(x)
    want = sps.t.interval(0.95, 4, loc=np.mean(x), scale=sps.sem(x))
    assert mean == pytest.approx(np.mean(x))
    assert sd == pytest.approx(np.std(x, ddof=1))
    assert (lo, hi) == pytest.approx(want)


def test_mean_ci_of_one_value_has_no_spread():
    mean, sd, lo, hi = stats.mean_ci([0.7])
    assert mean == 0.7 and math.isnan(sd) and math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("k, n, lo, hi", [  # Newcombe (1998), Stat Med 17:857, table I, method 3 (Wilson)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_newcombe(k, n, lo, hi):
    assert stats.wilson_interval(k, n) == pytest.approx((lo, hi), abs=5e-5)


def test_paired_t_and_dz_match_lakens_2013():
    t, p = stats.paired_t(MOVIE_2, MOVIE_1)
    assert t == pytest.approx(4.74, abs=0.005)
    assert p == pytest.approx(sps.ttest_rel(MOVIE_1, MOVIE_2).pvalue)
    assert stats.cohens_dz(MOVIE_2, MOVIE_1) == pytest.approx(1.50)


@pytest.mark.parametrize("a, b, p", [([0.5, 0.6], [0.5, 0.6], 1.0), ([0.5, 0.6], [0.6, 0.7], 0.0)])
def test_paired_t_without_spread(a, b, p):
    assert stats.paired_t(a, b)[1] == p


def test_paired_t_needs_two_pairs():
    assert math.isnan(stats.paired_t([0.5], [0.6])[1])


def test_wilcoxon_matches_scipy_and_its_floor():
    a, b = np.array(MOVIE_2, float), np.array(MOVIE_1, float) + np.linspace(0, 0.1, 10)
    assert stats.wilcoxon_p(a, b) == pytest.approx(sps.wilcoxon(b - a).pvalue)
    assert stats.wilcoxon_p([1, 2], [1, 2]) == 1.0
    assert stats.wilcoxon_min_p(5) == pytest.approx(sps.wilcoxon([1, 2, 3, 4, 5]).pvalue)
    assert stats.wilcoxon_min_p(6) < 0.05 < stats.wilcoxon_min_p(5)


@pytest.mark.parametrize("p, want", [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),  # worked by hand: 4p, 3p, max(2p, prev), 1p
    ([0.5], [0.5]),
    ([0.01, math.nan, 0.02], [0.02, math.nan, 0.02]),  # NaN is outside the family of 2
    ([0.3, 0.4], [0.6, 0.6]),
])
def test_holm(p, want):
    assert stats.holm(p) == pytest.approx(want, nan_ok=True)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact McNemar p from its closed form: 2 sum_{i<=min} C(n, i) / 2^n, capped at 1."""
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n)


@pytest.mark.parametrize("n01, n10", [(9, 1), (0, 5), (3, 3), (12, 30), (0, 0)])
def test_mcnemar_exact_matches_binomial_sum(n01, n10):
    a = [False] * n01 + [True] * n10 + [True] * 7 + [False] * 4
    b = [True] * n01 + [False] * n10 + [True] * 7 + [False] * 4
    got = stats.mcnemar_exact(a, b)
    assert got[:2] == (n01, n10)
    assert got[2] == pytest.approx(binomial_two_sided(n01, n01 + n10) if n01 + n10 else 1.0)


def test_bits():
    assert stats.bits("0110").tolist() == [False, True, True, False]


@pytest.mark.parametrize("dz, n, power", [(0.5, 34, 0.8078), (0.8, 15, 0.8213), (1.0, 10, 0.8031)])
def test_paired_t_power_matches_gpower(dz, n, power):
    # G*Power 3.1, "Means: difference from constant (one sample case)", two tails, alpha 0.05
    assert stats.paired_t_power(dz, n) == pytest.approx(power, abs=5e-4)
    assert stats.seeds_needed(dz) == n


@pytest.mark.parametrize("dz, want", [(0.2, 199), (-0.5, 34), (0.0, None), (math.nan, None), (math.inf, 2)])
def test_seeds_needed(dz, want):
    assert stats.seeds_needed(dz) == want


def test_expected_max_matches_enumeration():
    values = [0.61, 0.55, 0.70, 0.64]
    for n in (1, 2, 3):
        draws = list(itertools.product(values, repeat=n))
        assert stats.expected_max(values, n) == pytest.approx(np.mean([max(d) for d in draws]))
    assert stats.expected_max(values, 1) == pytest.approx(np.mean(values))
    assert stats.expected_max(values, 200) == pytest.approx(max(values))


@pytest.mark.parametrize("n, expected, sd", [
    # sorted 0.55 0.61 0.64 0.70, weights (i/4)^n - ((i-1)/4)^n
    (1, 0.625, math.sqrt(1.5742 / 4 - 0.625 ** 2)),  # the mean, and the population sd of the four
    (2, 10.48 / 16, 0.045),  # weights 1, 3, 5, 7 / 16: E[max^2] = 6.8968 / 16 = 0.43105, minus 0.655^2
])
def test_expected_best_by_hand(n, expected, sd):
    out = stats.expected_best([0.61, 0.55, 0.70, 0.64], n)
    assert out["expected"] == pytest.approx(expected) and out["sd"] == pytest.approx(sd)


def test_expected_best_sd_matches_enumeration():
    values = [0.61, 0.55, 0.70, 0.64, 0.58]
    for n in (1, 2, 3):
        maxima = [max(d) for d in itertools.product(values, repeat=n)]
        out = stats.expected_best(values, n)
        assert (out["expected"], out["sd"]) == pytest.approx((np.mean(maxima), np.std(maxima)))


def test_expected_best_of_a_loss_is_the_expected_minimum():
    # nine ordered pairs from (0.5, 0.3, 0.4): minima sum to 3.2
    out = stats.expected_best([0.5, 0.3, 0.4], 2, higher_is_better=False)
    assert out["expected"] == pytest.approx(3.2 / 9)
    assert out["sd"] == pytest.approx(np.std([0.5, 0.3, 0.4, 0.3, 0.3, 0.3, 0.4, 0.3, 0.4]))


def test_expected_best_curve_keeps_the_best_trial_apart():
    curve = stats.expected_best_curve([0.61, 0.55, 0.70, 0.64])
    assert [c["trials"] for c in curve] == [1, 2, 3, 4]
    assert all(c["best_trial"] == 0.70 for c in curve)
    assert curve[-1]["expected"] == pytest.approx(stats.expected_max([0.61, 0.55, 0.70, 0.64], 4))
    assert curve[-1]["expected"] < 0.70  # the expectation over 4 draws, not the best trial
    assert curve[0]["expected"] == pytest.approx(0.625)
    assert stats.expected_best_curve([]) == [] and math.isnan(stats.expected_best([], 3)["sd"])
    assert stats.expected_best([0.7, 0.7], 5)["sd"] == 0.0


def test_roc_auc():
    assert stats.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)  # sklearn's doc example
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 200), rng.random(200)
    pairs = [(p > q) + 0.5 * (p == q) for p in s[y == 1] for q in s[y == 0]]
    assert stats.roc_auc(y, s) == pytest.approx(np.mean(pairs))
    assert math.isnan(stats.roc_auc([1, 1], [0.2, 0.3]))


def test_pooled_sd():
    assert stats.pooled_sd([0.1, 0.2, math.nan], [3, 5, 1]) == pytest.approx(math.sqrt((2 * 0.01 + 4 * 0.04) / 6))
    assert math.isnan(stats.pooled_sd([math.nan], [1]))


def test_compare_pair_uses_mcnemar_for_one_pair_and_t_otherwise():
    one = stats.compare_pair([0.5], [0.6], np.array([True, False] * 5), np.array([True] * 10))
    assert one["test"] == "McNemar" and one["p"] == pytest.approx(binomial_two_sided(5, 5))
    many = stats.compare_pair(MOVIE_2, MOVIE_1)
    assert many["test"] == "paired t" and many["dz"] == pytest.approx(1.5) and many["diff"] == pytest.approx(1.0)
    assert many["wilcoxon_p"] == pytest.approx(stats.wilcoxon_p(MOVIE_2, MOVIE_1))
    assert math.isnan(stats.compare_pair([1, 2, 3], [2, 3, 5])["wilcoxon_p"])  # 3 pairs cannot reach 0.05


@pytest.mark.parametrize("row, want", [
    ({"n": 0, "diff": math.nan, "test": "none"}, "not compared: no seed finished in both cells"),
    ({"n": 1, "diff": 0.1, "test": "none"}, "too few seeds (1): no test"),
    ({"n": 1, "diff": 0.1, "test": "McNemar", "p_holm": 0.001}, "better (single models)"),
    ({"n": 1, "diff": -0.1, "test": "McNemar", "p_holm": 0.2}, "no detectable difference (single models)"),
    ({"n": 5, "diff": -0.02, "test": "paired t", "p_holm": 0.01, "power": 0.9}, "worse"),
    ({"n": 3, "diff": 0.01, "test": "paired t", "p_holm": 0.4, "power": 0.1}, "too few seeds (3) for power"),
    ({"n": 20, "diff": 0.001, "test": "paired t", "p_holm": 0.7, "power": 0.95}, "no detectable difference"),
])
def test_verdict(row, want):
    assert stats.verdict({"p_holm": math.nan, "power": math.nan} | row) == want


def test_aso_orders_clearly_separated_scores():
    pytest.importorskip("deepsig")
    rng = np.random.default_rng(0)
    good, bad = rng.normal(0.85, 0.01, 8), rng.normal(0.75, 0.01, 8)
    eps = stats.aso_eps(good, bad, iterations=100)
    assert eps < stats.ASO_THRESHOLD
    assert stats.aso_eps(good, bad, iterations=100) == eps  # seeded
    assert stats.aso_eps(bad, good, iterations=100) > 0.5


def test_aso_without_deepsig(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepsig", None)  # import deepsig now raises ImportError
    assert not stats.aso_available()
    assert math.isnan(stats.aso_eps([1, 2, 3, 4, 5], [0, 1, 2, 3, 4]))


def test_identical_seeds_are_no_difference_and_zero_mean_is_underpowered():
    same = stats.compare_pair([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["power"] == 1.0 and stats.verdict(same | {"p_holm": same["p"]}) == "no detectable difference"
    cancel = stats.compare_pair([0.57, 0.53], [0.56, 0.54])  # +0.01 and -0.01: mean 0 from two seeds
    assert stats.verdict(cancel | {"p_holm": cancel["p"]}) == "too few seeds (2) for power"
