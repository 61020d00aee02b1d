"""harness.stats.labelling: binary against three-class runs on the same test sentences.

The estimator is checked against statsmodels on fixed data and its interval's coverage by
simulating whole studies (a population of reviews, sentences clustered in them, seeds that
shift every sentence of a run), hundreds in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from harness.stats.bands import cluster_variance
from harness.stats.labelling import compare, difference


def _fixed(seed: int = 3, n: int = 90, groups: int = 17):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    a = (rng.random((4, n)) < 0.8).astype(float)
    b = (rng.random((6, n)) < 0.7).astype(float)
    return a, b, g


def test_the_test_part_is_statsmodels_cluster_robust_variance_of_a_mean():
    a, b, g = _fixed()
    d = a.mean(axis=0) - b.mean(axis=0)
    fit = sm.OLS(d, np.ones(len(d))).fit(cov_type="cluster", cov_kwds={"groups": g})  # G/(G-1) (N-1)/(N-K), K = 1
    var, n_groups = cluster_variance((d - d.mean()) / len(d), g)
    assert n_groups == 17
    assert var == pytest.approx(float(fit.bse[0]) ** 2, rel=1e-10)


def test_the_difference_adds_each_sides_seed_variance_and_welch_satterthwaite_df():
    a, b, g = _fixed()
    out = difference(a, b, g, delta=0.01)
    va, vb = a.mean(axis=1).var(ddof=1) / 4, b.mean(axis=1).var(ddof=1) / 6
    d_i = a.mean(axis=0) - b.mean(axis=0)
    vt, _ = cluster_variance((d_i - d_i.mean()) / len(d_i), g)
    assert out["difference"] == pytest.approx(a.mean() - b.mean())
    assert out["se"] == pytest.approx(math.sqrt(va + vb + vt))
    df = (va + vb + vt) ** 2 / (va ** 2 / 3 + vb ** 2 / 5 + vt ** 2 / 16)
    assert out["df"] == pytest.approx(df)
    # atanh scale: the interval's ends map back to d +- t se / (1 - d^2) there
    t = stats.t.ppf(0.975, df)
    d = out["difference"]
    assert math.atanh(out["hi"]) - math.atanh(d) == pytest.approx(t * out["se"] / (1 - d ** 2))
    assert -1 <= out["lo"] < d < out["hi"] <= 1
    assert out["seed_parts"] == 2


def test_one_run_a_side_has_no_seed_part_and_one_group_no_interval():
    a, b, g = _fixed()
    assert difference(a[:1], b, g)["seed_parts"] == 1
    flat = difference(a, b, np.zeros(len(g)))
    assert math.isnan(flat["lo"]) and flat["verdict"].startswith("undecided")


def _study(rng, gap: float, n_groups: int = 40, per: int = 8, runs: int = 5):
    """One simulated study: sentences of n_groups reviews, binary runs and three-class runs."""
    review = rng.normal(0, 1.0, n_groups).repeat(per)
    item = review + rng.normal(0, 1.0, n_groups * per)  # a sentence's easiness, shared within its review
    groups = np.arange(n_groups).repeat(per)

    def side(shift, k):
        seed = rng.normal(0, 0.25, (k, 1))  # a run's luck moves every sentence
        return (rng.random((k, len(item))) < 1 / (1 + np.exp(-(1.2 + shift + item + seed)))).astype(float)

    return side(0.0, runs), side(-gap, runs), groups


def _truth(gap: float, draws: int = 400_000) -> float:
    """The population difference: expected accuracy over reviews, sentences and seeds."""
    rng = np.random.default_rng(99)
    item = rng.normal(0, 1.0, draws) + rng.normal(0, 1.0, draws)
    seed_a, seed_b = rng.normal(0, 0.25, draws), rng.normal(0, 0.25, draws)
    p = lambda shift, s: 1 / (1 + np.exp(-(1.2 + shift + item + s)))  # noqa: E731
    return float(np.mean(p(0.0, seed_a) - p(-gap, seed_b)))


@pytest.mark.parametrize("gap", [0.0, 0.4])
def test_the_interval_covers_the_population_difference_at_about_95_percent(gap):
    rng = np.random.default_rng(7 + int(gap * 10))
    truth = _truth(gap)
    hits = []
    for _ in range(400):
        a, b, g = _study(rng, gap)
        out = difference(a, b, g)
        hits.append(out["lo"] <= truth <= out["hi"])
    coverage = float(np.mean(hits))
    assert 0.92 <= coverage <= 0.985, coverage  # binomial sd at 400 studies: 0.011


def test_compare_splits_the_sentences_into_clear_and_near_neutral():
    scores = np.array([-2.0, -0.5, -0.4, 0.0, 0.5, 0.6, 1.5, 3.0, -1.0, 0.2])
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    binary = (scores > 0).astype(int)
    three = np.searchsorted([-0.5, 0.5], scores, side="left")
    three_pred = np.array([[0, 1, 1, 1, 1, 2, 2, 2, 0, 1], [0, 0, 1, 0, 2, 1, 2, 2, 0, 1]])
    binary_pred = np.array([[0, 0, 1, 0, 0, 1, 1, 1, 0, 1], [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]])
    out = compare(binary_pred == binary, three_pred == three, three_pred, scores, groups, binary, three)
    clear = scores <= -0.5
    clear |= scores > 0.5
    assert out["clear"]["n"] == int(clear.sum()) == 6
    assert out["near"]["n"] == 4
    assert out["clear"]["binary"]["accuracy"] == pytest.approx(1.0)
    assert out["clear"]["three"]["accuracy"] == pytest.approx(np.mean((three_pred == three)[:, clear]))
    assert out["clear"]["called_neutral"] == pytest.approx(np.mean(three_pred[:, clear] == 1))
    assert out["near"]["three"]["accuracy"] == pytest.approx(np.mean(three_pred[:, ~clear] == 1))
    assert out["near"]["three_majority"] == 1.0  # every near-neutral sentence is neutral
    assert out["near"]["binary_majority"] == 0.5
