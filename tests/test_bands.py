"""harness.stats.bands: score bands, the clustered accuracy interval against statsmodels and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from harness.stats import bands
from harness.data import encode_labels
from harness.study import DataSpec


@pytest.mark.parametrize("score, band", [
    (-1.2, "clear"), (-0.5, "clear"), (-0.49, "near-neutral"), (0.0, "near-neutral"), (0.5, "near-neutral"),
    (0.51, "clear"), (3.1, "clear")])
def test_band_of_cuts_like_the_three_class_labels(score, band):
    assert bands.band_of([score])[0] == band
    spec = DataSpec(thresholds=(-0.5, 0.5))
    label, *_ = encode_labels(pd.Series([score, -4.0, 4.0], name="score"), spec, "test")
    assert ("near-neutral" if label[0] == 1 else "clear") == band


def test_band_names_must_match_the_edges():
    with pytest.raises(ValueError, match="2 band edges need 3 names"):
        bands.band_of([0.0], (-0.5, 0.5), ("a", "b"))


def clustered(rng: np.random.Generator, groups: int, size: float, p: float, icc: float = 0.31, runs: int = 3):
    """Correctness (runs, N) of sentences in `groups` reviews: a review-level accuracy drawn from a
    beta with intra-class correlation `icc` (the default test set's label ICC is about 0.31), and
    runs that disagree on 5% of the examples."""
    sizes = 1 + rng.poisson(size - 1, groups)
    g = np.repeat(np.arange(groups), sizes)
    scale = (1 - icc) / icc
    base = rng.random(len(g)) < rng.beta(p * scale, (1 - p) * scale, groups)[g]
    return base[None, :] ^ (rng.random((runs, len(g))) < 0.05), g


def test_clustered_accuracy_matches_statsmodels():
    correct, g = clustered(np.random.default_rng(0), 30, 6, 0.7)
    got = bands.clustered_accuracy(correct, g)
    y = correct.mean(axis=0)
    ols = sm.OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": g}, use_t=True)
    assert got["accuracy"] == pytest.approx(y.mean()) and got["se"] == pytest.approx(ols.bse[0], rel=1e-10)
    assert got["groups"] == 30 and got["n"] == len(y)
    n_eff = y.mean() * (1 - y.mean()) / ols.bse[0] ** 2
    alpha = 2 * stats.norm.sf(stats.t.ppf(0.975, 29))
    assert (got["lo"], got["hi"]) == pytest.approx(proportion_confint(y.mean() * n_eff, n_eff, alpha, "wilson"))
    assert got["deff"] == pytest.approx(ols.bse[0] ** 2 / (y.var(ddof=1) / len(y)))


@pytest.mark.parametrize("groups, size, p", [
    (30, 5, 0.6),  # the default test set's near-neutral sentences: ~150 in ~30 reviews
    (64, 11, 0.8),  # its clear ones
])
def test_clustered_interval_covers_at_its_stated_rate(groups, size, p):
    rng, studies = np.random.default_rng(3), 1000
    truth = 0.95 * p + 0.05 * (1 - p)  # the flips move every run's expected accuracy
    hits = sum(r["lo"] <= truth <= r["hi"] for r in
               (bands.clustered_accuracy(*clustered(rng, groups, size, p)) for _ in range(studies)))
    mc = math.sqrt(0.95 * 0.05 / studies)
    print(f"\n95% clustered interval, {groups} groups of ~{size}, accuracy {truth:.2f}: coverage "
          f"{hits / studies:.3f} over {studies} studies (Monte Carlo se {mc:.3f})")
    assert abs(hits / studies - 0.95) < 3.5 * mc


def test_few_groups_and_perfect_bands():
    one = bands.clustered_accuracy([1, 0, 1], ["r1", "r1", "r1"])
    assert one["accuracy"] == pytest.approx(2 / 3) and math.isnan(one["lo"])
    perfect = bands.clustered_accuracy(np.ones((3, 8)), np.arange(8) // 2)
    # no spread: the interval falls back to Wilson's on the 8 examples at t_3, 8 / (8 + t^2) to 1
    t = stats.t.ppf(0.975, 3)
    assert perfect["hi"] == 1.0 and perfect["lo"] == pytest.approx(8 / (8 + t ** 2))


SCORES = np.array([-2.0, -0.3, 0.2, 1.5, 2.2, 0.4, -1.0, 0.1])
GROUPS = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
BINARY = np.array([[1, 0, 1, 1, 1, 0, 1, 1], [1, 1, 0, 1, 1, 0, 1, 1]])  # two runs
THREE = np.array([1, 0, 0, 1, 1, 1, 0, 0])


def test_by_band_on_a_fixed_example():
    table = bands.by_band(BINARY, SCORES, GROUPS).set_index("band")
    assert table.index.tolist() == ["clear", "near-neutral"]
    assert table.loc["clear", ["n", "groups", "accuracy"]].tolist() == [4, 4, 1.0]
    # near-neutral examples right in 1 of 2, 1 of 2, 0 of 2 and 2 of 2 runs
    assert table.loc["near-neutral", ["n", "groups", "accuracy"]].tolist() == [4, 4, 0.5]


def test_compare_labellings_puts_both_tasks_side_by_side():
    labels = {"binary": (SCORES > 0).astype(int), "three-class": np.searchsorted([-0.5, 0.5], SCORES)}
    table = bands.compare_labellings(SCORES, GROUPS, {"binary": BINARY, "three-class": THREE}, labels)
    got = table.set_index(["task", "band"])
    assert got.loc[("three-class", "clear"), "accuracy"] == 0.75
    assert got.loc[("three-class", "near-neutral"), "accuracy"] == 0.25
    assert got.loc[("binary", "near-neutral"), "majority"] == 0.75  # three of the four scores are > 0
    assert got.loc[("three-class", "near-neutral"), "majority"] == 1.0  # all four are neutral
    assert table.columns[0] == "task" and len(table) == 4


def test_band_gap_test_part_is_statsmodels_cluster_robust_variance_of_the_difference():
    correct, g = clustered(np.random.default_rng(1), 40, 8, 0.75, runs=4)
    near = np.random.default_rng(2).random(correct.shape[1]) < 0.2
    got = bands.band_gap(correct, near, g)
    y = correct.mean(axis=0)
    X = sm.add_constant(near.astype(float))
    fit = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": g})  # correction G/(G-1) (N-1)/(N-2)
    n = len(y)
    assert got["gap"] == pytest.approx(fit.params[1])
    assert got["var_test"] * (n - 1) / (n - 2) == pytest.approx(fit.bse[1] ** 2, rel=1e-10)
    per_run = correct[:, near].mean(axis=1) - correct[:, ~near].mean(axis=1)
    assert got["var_seed"] == pytest.approx(per_run.var(ddof=1) / 4)
    assert -1 <= got["lo"] < got["gap"] < got["hi"] <= 1


def _gap_study(rng, reviews: int = 60, per: int = 12, runs: int = 5):
    """Sentences of `reviews` reviews, a fifth near neutral and harder; runs whose luck moves them all."""
    review = rng.normal(0, 0.8, reviews).repeat(per)
    near = rng.random(reviews * per) < 0.2
    item = review + rng.normal(0, 1.0, reviews * per) - 1.2 * near
    seed = rng.normal(0, 0.25, (runs, 1))
    correct = (rng.random((runs, len(item))) < 1 / (1 + np.exp(-(1.3 + item + seed)))).astype(float)
    return correct, near, np.arange(reviews).repeat(per)


def test_band_gap_interval_covers_the_population_gap_at_95_percent_or_a_little_more():
    """Conservative: each run's luck on single sentences is in both the seed part and the test part
    (0.985 here, not 0.95)."""
    big = np.random.default_rng(11)
    draws = 400_000
    near = big.random(draws) < 0.2
    item = big.normal(0, 0.8, draws) + big.normal(0, 1.0, draws) - 1.2 * near
    p = 1 / (1 + np.exp(-(1.3 + item + big.normal(0, 0.25, draws))))
    truth = p[near].mean() - p[~near].mean()
    rng = np.random.default_rng(12)
    hits = [(lambda r: r["lo"] <= truth <= r["hi"])(bands.band_gap(*_gap_study(rng))) for _ in range(400)]
    coverage = float(np.mean(hits))
    print(f"\nband gap {truth:+.3f}: coverage of the 95% interval {coverage:.3f} over 400 studies")
    assert 0.93 <= coverage <= 0.995, coverage  # binomial sd at 400 studies: 0.011
