"""harness.stats.forecast: the learning-curve fit against scipy, its bands by simulation, backtest, crossings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from harness.stats import forecast as fc

# a curve and seed noise shaped like the default study's: accuracy 0.62 at n=50, 0.86 at n=1500,
# seed sd 0.032 at n=50 and 0.007 at n=1500
ALPHA, ETA, GAMMA = 0.10, 2.0, -0.5
V0, V1 = 2e-5, 0.05


def simulate(rng: np.random.Generator, sizes, seeds: int, alpha=ALPHA, eta=ETA, gamma=GAMMA) -> pd.DataFrame:
    rows = [(n, s, 1 - (alpha + eta * n ** gamma + rng.normal(0, math.sqrt(V0 + V1 / n))))
            for n in sizes for s in range(seeds)]
    return pd.DataFrame(rows, columns=["data_size", "seed", "accuracy"])


def test_recovers_a_known_power_law():
    runs = simulate(np.random.default_rng(0), [50, 100, 200, 400, 800, 1600, 3200], seeds=10)
    curve = fc.fit(fc.points(runs))
    assert curve.alpha == pytest.approx(ALPHA, abs=0.01)
    assert curve.gamma == pytest.approx(GAMMA, abs=0.05)
    assert curve.eta == pytest.approx(ETA, rel=0.2)
    assert curve.accuracy(6400) == pytest.approx(1 - ALPHA - ETA * 6400 ** GAMMA, abs=0.005)


def test_fit_matches_scipy_curve_fit_with_the_same_weights():
    p = fc.points(simulate(np.random.default_rng(1), [50, 150, 500, 1500], seeds=3))
    curve = fc.fit(p)
    sigma = np.sqrt(curve.variance(p.sizes) / p.seeds)
    want, _ = optimize.curve_fit(lambda n, a, e, g: a + e * n ** g, p.sizes, p.error, p0=[0.1, 1.0, -0.5],
                                 sigma=sigma, bounds=([0, 0, -1], [1, 100, 0]), max_nfev=10_000)
    assert [curve.alpha, curve.eta, curve.gamma] == pytest.approx(want, rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_the_bootstrap_grid_fit_agrees_with_least_squares(seed):
    p = fc.points(simulate(np.random.default_rng(seed), [50, 150, 500, 1500], seeds=3))
    curve = fc.fit(p)
    alpha, b, gamma = fc._profile(p.error[None, :], p.seeds / curve.variance(p.sizes), p.sizes / p.sizes[-1])
    grid = alpha + b * (np.array([1500, 6000]) / 1500) ** gamma
    assert grid == pytest.approx(curve.error([1500, 6000]), abs=2e-4)


@pytest.mark.parametrize("variances, v0, v1", [
    ([2e-5 + 0.05 / n for n in (50, 150, 500)], 2e-5, 0.05),  # exactly on the model
    ([0.001, 0.001, 0.001], 0.001, 0.0),  # flat
    ([0.004, 0.001, 0.003], None, None),  # no shape: any non-negative fit
])
def test_variance_model(variances, v0, v1):
    sizes = np.array([50.0, 150.0, 500.0])
    p = fc.Points(sizes, np.array([3, 3, 3]), np.zeros(3), np.array(variances), ())
    got = fc.variance_model(p)
    assert min(got) >= 0
    if v0 is not None:
        assert got == pytest.approx((v0, v1), abs=1e-9)


def test_one_run_per_size_has_no_band():
    p = fc.points(simulate(np.random.default_rng(2), [50, 150, 500], seeds=1))
    assert fc.variance_model(p) == (0.0, 0.0)
    assert np.isnan(fc.band(p, fc.fit(p), [1000])).all()


def test_identical_runs_give_a_band_of_no_width():
    runs = pd.DataFrame({"data_size": [50, 50, 150, 150, 500, 500], "seed": [1, 2] * 3,
                         "accuracy": [0.6, 0.6, 0.7, 0.7, 0.75, 0.75]})
    p = fc.points(runs)
    curve = fc.fit(p)
    assert fc.band(p, curve, [1000], new_seeds=2)[0].tolist() == [curve.accuracy(1000)] * 2
    assert curve.accuracy([50, 150, 500]) == pytest.approx([0.6, 0.7, 0.75], abs=1e-6)


def test_bands_cover_at_their_stated_rate():
    """300 studies of 4 sizes x 3 seeds on the true curve: 95% bands for the curve and for a 3-seed mean."""
    rng, sizes, studies = np.random.default_rng(11), [50, 150, 500, 1500], 300
    targets = np.array([1500, 3000, 6000])
    truth = 1 - (ALPHA + ETA * targets ** GAMMA)
    hit_mean, hit_new = np.zeros(3), np.zeros(3)
    for i in range(studies):
        p = fc.points(simulate(rng, sizes, seeds=3))
        curve = fc.fit(p)
        mean_band, new_band = fc.band(p, curve, targets, seed=i), fc.band(p, curve, targets, seed=i, new_seeds=3)
        fresh = truth - rng.normal(0, np.sqrt((V0 + V1 / targets) / 3))
        hit_mean += (mean_band[:, 0] <= truth) & (truth <= mean_band[:, 1])
        hit_new += (new_band[:, 0] <= fresh) & (fresh <= new_band[:, 1])
    mc = math.sqrt(0.95 * 0.05 / studies)
    print(f"\ncoverage of 95% bands at n = {targets.tolist()} over {studies} studies (Monte Carlo se {mc:.3f}): "
          f"curve {np.round(hit_mean / studies, 3).tolist()}, "
          f"mean of 3 fresh runs {np.round(hit_new / studies, 3).tolist()}")
    assert np.abs(hit_mean / studies - 0.95).max() < 3.5 * mc
    assert np.abs(hit_new / studies - 0.95).max() < 3.5 * mc


BACKTEST_RUNS = pd.DataFrame({  # 4 sizes x 3 seeds, accuracies as a study stores them
    "data_size": [50] * 3 + [150] * 3 + [500] * 3 + [1500] * 3,
    "seed": [1, 2, 3] * 4,
    "accuracy": [0.61, 0.66, 0.58, 0.74, 0.77, 0.75, 0.81, 0.80, 0.83, 0.85, 0.86, 0.84]})


def test_backtest_on_a_fixed_example():
    got = fc.backtest(BACKTEST_RUNS)
    assert fc.fit(fc.points(BACKTEST_RUNS[BACKTEST_RUNS["data_size"] < 1500])).gamma == pytest.approx(-0.800, abs=1e-3)
    assert got["hidden"] == 1500 and got["ratio"] == 3.0
    assert got["observed"] == pytest.approx(0.85)
    assert got["predicted"] == pytest.approx(BACKTEST_PREDICTED, abs=1e-4)
    assert got["error"] == pytest.approx(got["predicted"] - 0.85)
    assert (got["lo"], got["hi"]) == pytest.approx(BACKTEST_BAND, abs=1e-4)
    assert got["inside"] is True


BACKTEST_PREDICTED = 0.83499  # fitted on 50, 150, 500: alpha 0.150, eta 5.35, gamma -0.800
BACKTEST_BAND = (0.80656, 0.88642)  # 95% band for the mean of 3 fresh runs at n=1500


def test_backtest_needs_four_sizes():
    got = fc.backtest(BACKTEST_RUNS[BACKTEST_RUNS["data_size"] < 1500])
    assert "needs 4 sizes" in got["warning"] and "predicted" not in got


def test_forecast_table_and_default_sizes():
    f = fc.forecast(BACKTEST_RUNS, pool_size=2610)
    assert f.table["size"].tolist() == [50, 150, 500, 1500, 2610, 3000, 6000]
    assert f.table["runs"].tolist() == [3, 3, 3, 3, 0, 0, 0]
    assert f.table["beyond"].tolist() == [False] * 6 + [False]  # 6000 is exactly 4x: not beyond
    assert (f.table["lo"] <= f.table["fitted"]).all() and (f.table["fitted"] <= f.table["hi"]).all()
    assert (f.table["pred_hi"] - f.table["pred_lo"] >= f.table["hi"] - f.table["lo"]).all()
    observed = f.table.dropna(subset=["observed"])
    assert observed["fitted"].to_numpy() == pytest.approx(observed["observed"].to_numpy(), abs=0.02)
    assert f.warnings == ()


@pytest.mark.parametrize("runs, sizes, expect", [
    (BACKTEST_RUNS[BACKTEST_RUNS["data_size"] < 500], None, "2 training size(s) (50, 150): a curve needs at least 3"),
    (BACKTEST_RUNS.assign(accuracy=BACKTEST_RUNS["accuracy"].where(BACKTEST_RUNS["data_size"] != 1500, 0.79)), None,
     "not monotone: mean accuracy falls from 0.813 at n=500 to 0.790 at n=1500"),
    (BACKTEST_RUNS, [7000], "forecast at n=7000 is beyond 4x the largest size fitted (1500)"),
    (BACKTEST_RUNS[BACKTEST_RUNS["seed"] == 1], None, "one run at every size: no seed spread to resample"),
    # the default study's full fine-tuning at 2 epochs: 0.598, 0.771, 0.794 at n = 50, 150, 500
    (pd.DataFrame({"data_size": [50, 150, 500], "seed": 1, "accuracy": [0.598, 0.771, 0.794]}), None,
     "gamma is at its bound -1: the data bend faster than a power law in [-1, 0] allows"),
])
def test_warnings(runs, sizes, expect):
    f = fc.forecast(runs, sizes=sizes)
    assert any(expect in w for w in f.warnings), f.warnings
    if "a curve needs" in expect:
        assert f.curve is None and f.table.empty


def test_sizes_must_be_numbers():
    with pytest.raises(ValueError, match="data_size must be a positive number.*'all'"):
        fc.points(pd.DataFrame({"data_size": [50, "all"], "seed": [1, 1], "accuracy": [0.6, 0.7]}))


@pytest.mark.parametrize("a, b, lo, hi, want", [
    # n^-0.5 = 0.1 n^-0.1  <=>  n^0.4 = 10  <=>  n = 10^2.5
    (fc.Curve(0.0, 1.0, -0.5, 0, 1, 1), fc.Curve(0.0, 0.1, -0.1, 0, 1, 1), 10, 10_000, [10 ** 2.5]),
    (fc.Curve(0.0, 1.0, -0.5, 0, 1, 1), fc.Curve(0.0, 0.1, -0.1, 0, 1, 1), 1000, 10_000, []),
    # 0.2 + 0 = 0.1 + 2 n^-0.5  <=>  n = 400
    (fc.Curve(0.2, 0.0, -0.5, 0, 1, 1), fc.Curve(0.1, 2.0, -0.5, 0, 1, 1), 50, 5000, [400.0]),
])
def test_crossings(a, b, lo, hi, want):
    assert fc.crossings(a, b, lo, hi) == pytest.approx(want, rel=1e-6)
