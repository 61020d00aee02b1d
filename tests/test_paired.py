"""harness.stats.paired: per-example paired differences against statsmodels, and their simultaneous
coverage (a cell against the majority-class baseline) by simulation with labels clustered by review."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from harness.stats import paired


def fixed_grid(seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(25), rng.integers(2, 9, 25))  # 25 reviews of 2 to 8 sentences
    labels = (rng.random(25)[groups] < 0.6).astype(float)
    Y = (rng.random((3, 4, len(groups))) < np.array([0.6, 0.7, 0.8])[:, None, None]).astype(float)
    Y[2, 1:] = np.nan  # a cell with one run
    return Y, labels, groups


def test_the_test_part_is_statsmodels_cluster_robust_ols():
    """Own products included: the variance of the mean of the seeds' coefficients in an OLS of the stacked
    differences on seed indicators, clustered by review (statsmodels' CR1 with its small-sample factor)."""
    Y, labels, groups = fixed_grid()
    got = paired.against_key(Y, labels, groups, distinct_runs=False)
    for c in range(2):
        d = (Y[c] - labels[None, :]).ravel()  # (4 seeds x N), seed-major
        X = np.kron(np.eye(4), np.ones((len(groups), 1)))
        fit = sm.OLS(d, X).fit(cov_type="cluster", cov_kwds={"groups": np.tile(groups, 4)})
        n = len(d)
        correction = (n - 1) / (n - 4)  # statsmodels' (N - 1) / (N - K) besides G / (G - 1)
        assert got["estimate"][c] == pytest.approx(fit.params.mean(), abs=1e-12)
        assert got["var_test"][c] == pytest.approx(fit.cov_params().sum() / 16 / correction, rel=1e-10)
        run_means = (Y[c] - labels).mean(axis=1)
        assert got["var_seed"][c] == pytest.approx(run_means.var(ddof=1) / 4, rel=1e-10)
    d = Y[2, 0] - labels  # one run: an OLS on a constant, K = 1
    fit = sm.OLS(d, np.ones((len(d), 1))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    assert got["var_test"][2] == pytest.approx(fit.bse[0] ** 2, rel=1e-10)


def test_distinct_runs_leave_out_each_run_s_own_products():
    Y, labels, groups = fixed_grid()
    with_own = paired.against_key(Y, labels, groups, distinct_runs=False)["var_test"]
    distinct = paired.against_key(Y, labels, groups)["var_test"]
    assert (distinct[:2] < with_own[:2]).all()
    assert distinct[2] == pytest.approx(with_own[2], rel=0.01)  # one run: nothing to leave out (up to the PSD projection)


def test_pooled_row_is_the_unweighted_mean_of_the_cells():
    Y, labels, groups = fixed_grid()
    D = Y - labels
    got = paired.differences(D, groups, pooled=True)
    assert got["cell"].tolist() == [0, 1, 2, -1] and got["runs"].tolist() == [4, 4, 1, 9]
    assert got["estimate"].iloc[-1] == pytest.approx(got["estimate"].iloc[:3].mean())
    assert got["var_seed"].iloc[-1] == pytest.approx(got["var_seed"].iloc[:3].sum() / 9)
    assert (got["lo_sim"] <= got["lo"]).all() and (got["hi"] <= got["hi_sim"]).all()


def test_identical_evaluations_are_a_point_and_equivalent():
    Y, _, groups = fixed_grid()
    got = paired.differences(Y - Y, groups, pooled=True)
    assert (got["estimate"] == 0).all() and (got["lo_sim"] == 0).all() and (got["hi_sim"] == 0).all()
    assert set(got["verdict"]) == {"equivalent within ±0.01"}


def test_cells_without_runs_are_left_out():
    Y, labels, groups = fixed_grid()
    Y[1] = np.nan
    assert paired.against_key(Y, labels, groups)["cell"].tolist() == [0, 2]


# --- coverage: cells against the majority class on a clustered test set ---------------------------
# 60 reviews of 12 sentences; a review's share of positive sentences q_g ~ Beta(3, 2) (mean 0.6, the
# labels cluster by review as the default study's do, design effect ~5); the baseline answers positive
# everywhere. A cell is right with chance r1 on positive and r0 on negative sentences, shifted by its
# seed (sd 0.02), by the review (+-0.08) and by the sentence (+-0.04), the same for every run. The true
# difference: 0.6 r1 + 0.4 r0 - 0.6. The first cell is exactly as good as the baseline.
R1 = np.array([0.80, 0.75, 0.80, 0.70, 0.78, 0.85])
R0 = np.array([0.30, 0.55, 0.45, 0.72, 0.70, 0.60])
TRUTH = 0.6 * R1 + 0.4 * R0 - 0.6


def simulated(rng: np.random.Generator, seeds: int = 4, reviews: int = 60, per: int = 12):
    groups = np.repeat(np.arange(reviews), per)
    labels = (rng.random(len(groups)) < rng.beta(3, 2, reviews)[groups]).astype(float)
    shift = rng.uniform(-0.08, 0.08, reviews)[groups] + rng.uniform(-0.04, 0.04, len(groups))
    chance = np.where(labels == 1, R1[:, None], R0[:, None])[:, None, :] + shift \
        + rng.normal(0, 0.02, (len(R1), seeds, 1))
    return (rng.random(chance.shape) < chance).astype(float), labels, groups


def test_simultaneous_intervals_cover_every_cell_s_difference_together():
    """300 studies: the simultaneous 95% intervals cover all six true differences at once ~95% of the time,
    and the cell as good as the baseline is called better than it at most 5% of the time; an interval
    that treats the baseline as a fixed number (its error cancelling) covers far less."""
    rng, studies = np.random.default_rng(3), 300
    family, false_beats, naive = 0, 0, 0
    for _ in range(studies):
        Y, labels, groups = simulated(rng)
        got = paired.against_key(Y, labels, groups)
        family += bool(((got["lo_sim"] <= TRUTH) & (TRUTH <= got["hi_sim"])).all())
        false_beats += bool(got["lo_sim"][0] > 0)
        # the unpaired reading: each cell's own interval for its accuracy, minus the baseline's point
        acc_var = got["var_seed"] + paired.against_key(Y, np.zeros_like(labels), groups)["var_test"]
        half = got["crit"] * np.sqrt(acc_var)
        naive += bool((np.abs(got["estimate"] - TRUTH) <= half).all())
    mc = math.sqrt(0.95 * 0.05 / studies)
    print(f"\nfamily coverage {family / studies:.3f} (Monte Carlo se {mc:.3f}), cell as good as the baseline called "
          f"better {false_beats / studies:.3f}, baseline taken as exact {naive / studies:.3f}")
    assert abs(family / studies - 0.95) < 3 * mc
    assert false_beats / studies <= 0.05 + 2 * mc
    assert naive / studies < 0.85
