"""harness.stats.forecast: the learning-curve fit against scipy, its bands by simulation (seed noise alone, and
seed and clustered test-set noise), the floor, backtests at a forecast's own reach, crossings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from harness.stats import forecast as fc
from harness.stats import grid_model, verdicts

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
    p = fc.points(simulate(np.random.default_rng(2), [50, 150, 500, 1500], seeds=1))
    assert fc.variance_model(p) == (0.0, 0.0)
    assert np.isnan(fc.band(p, fc.fit(p), [1000])).all()


def test_identical_runs_give_a_band_of_no_width():
    runs = pd.DataFrame({"data_size": [50, 50, 150, 150, 500, 500, 1500, 1500], "seed": [1, 2] * 4,
                         "accuracy": [0.6, 0.6, 0.7, 0.7, 0.75, 0.75, 0.78, 0.78]})
    p = fc.points(runs)
    curve = fc.fit(p)
    assert fc.band(p, curve, [3000], new_seeds=2)[0].tolist() == [curve.accuracy(3000)] * 2
    assert curve.accuracy([50, 150, 500, 1500]) == pytest.approx([0.6, 0.7, 0.75, 0.78], abs=0.01)


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


BACKTEST_RUNS = pd.DataFrame({  # 5 sizes x 3 seeds, accuracies as a study stores them
    "data_size": [50] * 3 + [150] * 3 + [500] * 3 + [1500] * 3 + [4500] * 3,
    "seed": [1, 2, 3] * 5,
    "accuracy": [0.61, 0.66, 0.58, 0.74, 0.77, 0.75, 0.81, 0.80, 0.83, 0.85, 0.86, 0.84, 0.87, 0.88, 0.865]})
BACKTEST_PREDICTED = 0.865122  # fitted on 50-1500: alpha 0.118, eta 2.79, gamma -0.605
BACKTEST_BAND = (0.840178, 0.895535)  # 95% band for the mean of 3 fresh runs at n=4500


def test_backtest_on_a_fixed_example():
    got = fc.backtest(BACKTEST_RUNS)
    curve = fc.fit(fc.points(BACKTEST_RUNS[BACKTEST_RUNS["data_size"] < 4500]))
    assert (curve.alpha, curve.gamma) == pytest.approx((0.1176, -0.6046), abs=1e-4)
    assert got["hidden"] == 4500 and got["ratio"] == 3.0
    assert got["observed"] == pytest.approx(0.871667, abs=1e-6)
    assert got["predicted"] == pytest.approx(BACKTEST_PREDICTED, abs=1e-5)
    assert got["predicted"] == pytest.approx(float(curve.accuracy(4500)))
    assert got["error"] == pytest.approx(got["predicted"] - got["observed"])
    assert (got["lo"], got["hi"]) == pytest.approx(BACKTEST_BAND, abs=1e-5)
    assert got["inside"] is True


@pytest.mark.parametrize("ratio, fitted_upto, expect", [
    (3.0, 1500, None),  # 4500 / 3 = 1500: the four smaller sizes
    (2.5, 1500, None),  # fits up to 1800: the same four, so it reaches 3x
    (9.0, None, "a backtest at 9.0x (the forecast's own reach) would fit the sizes up to 500: 3 of them (50, 150, "
                "500), and a curve needs 4"),
])
def test_backtest_reaches_as_far_as_the_forecast(ratio, fitted_upto, expect):
    got = fc.backtest(BACKTEST_RUNS, ratio=ratio)
    assert got["wanted"] == ratio
    if expect:
        assert got["warning"] == expect and "predicted" not in got
    else:
        assert got["ratio"] == 4500 / fitted_upto and got["ratio"] >= ratio


def test_backtest_needs_five_sizes():
    got = fc.backtest(BACKTEST_RUNS[BACKTEST_RUNS["data_size"] < 4500])
    assert got["warning"] == "backtest needs 5 sizes (fit on 4, predict 1), got 4" and "predicted" not in got


def test_holdout_predicts_every_larger_size():
    with pytest.raises(ValueError, match=r"3 size\(s\) up to 500 \(50, 150, 500\): a curve needs 4"):
        fc.holdout(BACKTEST_RUNS, 500)
    runs = pd.concat([BACKTEST_RUNS, BACKTEST_RUNS[BACKTEST_RUNS["data_size"] == 4500].assign(data_size=9000,
                                                                                             accuracy=[0.88, 0.87, 0.89])])
    table = fc.holdout(runs, 1500)
    assert table["size"].tolist() == [4500, 9000] and table["ratio"].tolist() == [3.0, 6.0]
    assert table["observed"].tolist() == pytest.approx([0.871667, 0.88], abs=1e-6)
    assert table.iloc[0]["predicted"] == pytest.approx(BACKTEST_PREDICTED, abs=1e-5)
    assert ((table["lo"] < table["predicted"]) & (table["predicted"] < table["hi"])).all()
    assert (table["inside"] == ((table["lo"] <= table["observed"]) & (table["observed"] <= table["hi"]))).all()


def test_forecast_table_and_default_sizes():
    f = fc.forecast(BACKTEST_RUNS, pool_size=7830)
    assert f.table["size"].tolist() == [50, 150, 500, 1500, 4500, 7830, 9000, 18000]
    assert f.table["runs"].tolist() == [3, 3, 3, 3, 3, 0, 0, 0]
    assert f.table["beyond"].tolist() == [False] * 8  # 18000 is exactly 4x: not beyond
    assert (f.table["lo"] <= f.table["fitted"]).all() and (f.table["fitted"] <= f.table["hi"]).all()
    assert (f.table["pred_hi"] - f.table["pred_lo"] >= f.table["hi"] - f.table["lo"] - 1e-12).all()
    observed = f.table.dropna(subset=["observed"])
    assert observed["fitted"].to_numpy() == pytest.approx(observed["observed"].to_numpy(), abs=0.02)
    assert f.warnings == () and f.curve.bound is None


def test_no_band_beyond_the_data_is_narrower_than_the_largest_size_s_own_interval():
    f = fc.forecast(BACKTEST_RUNS)
    lo, hi = f.observed
    # the largest size's 3 runs: mean 0.871667, sd 0.00764; t(2) interval on the logit scale
    se = np.std([0.87, 0.88, 0.865], ddof=1) / math.sqrt(3)
    want = verdicts.logit_interval(0.871667, se, verdicts.critical(0.05, 2), math.inf)
    assert (lo, hi) == pytest.approx((float(want[0]), float(want[1])), abs=1e-5)
    beyond = f.table[f.table["runs"] == 0]
    assert (beyond["hi"] - beyond["lo"] >= hi - lo - 1e-12).all() and beyond["floored"].any()
    unfloored = fc.band(fc.points(BACKTEST_RUNS), f.curve, beyond["size"], floor=False)
    assert (unfloored[:, 1] - unfloored[:, 0] < hi - lo).any()  # the floor is what widened them


def test_the_largest_size_s_interval_is_the_grid_model_s_cell_interval():
    """With a test set, the floor is a cell interval of the grid model (its own seed variance and df;
    the report's cells table weighs the seed part's df with the grid's pooled variance, and the lab
    report passes that interval in)."""
    runs, test = simulate_tested(np.random.default_rng(5), [50, 150, 500, 1500], seeds=4)
    p = fc.points(runs, test=test)
    Y = test.correct.reshape(4, 4, -1)  # (the 4 sizes as cells, 4 seeds, N), as the report's grid holds them
    e = grid_model.cell_means(grid_model.accuracy_components(Y, test.groups))
    assert np.diag(p.test_cov) == pytest.approx(e.var_test, rel=1e-9)
    assert p.variance[-1] / 4 == pytest.approx(e.var_seed[-1], rel=1e-9)
    df = verdicts.satterthwaite_pair(e.var_seed[-1], e.var_test[-1], 3, 59)
    want = verdicts.logit_interval(e.estimate[-1], e.se[-1], verdicts.critical(0.05, df), 60)
    assert fc.observed_interval(p) == pytest.approx((float(want[0]), float(want[1])), rel=1e-9)


@pytest.mark.parametrize("runs, sizes, expect", [
    (BACKTEST_RUNS[BACKTEST_RUNS["data_size"] < 1500], None,
     "3 training size(s) (50, 150, 500): a curve of 3 parameters needs at least 4 (through 3 sizes or fewer it passes "
     "every mean, and nothing is left to check its shape by), so none is fitted"),
    (BACKTEST_RUNS.assign(accuracy=BACKTEST_RUNS["accuracy"].where(BACKTEST_RUNS["data_size"] != 4500, 0.84)), None,
     "not monotone: mean accuracy falls from 0.850 at n=1500 to 0.840 at n=4500"),
    (BACKTEST_RUNS, [20000], "forecast at n=20000 is beyond 4x the largest size fitted (4500)"),
    (BACKTEST_RUNS[BACKTEST_RUNS["seed"] == 1], None, "one run at every size: no seed spread to resample"),
    # a curve that bends faster than any power law in [-1, 0]: flat after a steep first step
    (pd.DataFrame({"data_size": [50, 150, 500, 1500], "seed": 1, "accuracy": [0.598, 0.771, 0.794, 0.797]}), None,
     "gamma is at its bound -1: the data bend faster than a power law in [-1, 0] allows"),
])
def test_warnings(runs, sizes, expect):
    f = fc.forecast(runs, sizes=sizes)
    assert any(expect in w for w in f.warnings), f.warnings
    if "a curve of 3 parameters" in expect:
        assert f.curve is None and f.table.empty and len(f.warnings) == 1
    if "bound -1" in expect:
        assert f.curve.bound == -1


def test_sizes_must_be_numbers():
    with pytest.raises(ValueError, match="data_size must be a positive number.*'all'"):
        fc.points(pd.DataFrame({"data_size": [50, "all"], "seed": [1, 1], "accuracy": [0.6, 0.7]}))


def test_a_test_set_must_match_the_runs():
    runs = BACKTEST_RUNS.head(4)
    with pytest.raises(ValueError, match=r"test.correct must be \(runs, examples\) = \(4, 10\), got \(3, 10\)"):
        fc.points(runs, test=fc.TestSet(np.ones((3, 10)), np.arange(10)))


# --- seed and test-set noise ----------------------------------------------------------------------
# A test set of 60 reviews of 12 sentences. Each review shifts the chance of a right answer by d_g
# (uniform in +-0.2: sd 0.115, so the test set's mean moves by ~0.015, as the default study's does)
# and each sentence by e_i (+-0.05), the same for every run: the test set's own luck, which moves
# every observed mean alike. The curve is lower than above so that no chance leaves [0, 1].
T_ALPHA, T_ETA, T_GAMMA = 0.20, 2.0, -0.5


def simulate_tested(rng: np.random.Generator, sizes, seeds: int, groups: int = 60, per_group: int = 12):
    group = np.repeat(np.arange(groups), per_group)
    shift = rng.uniform(-0.2, 0.2, groups)[group] + rng.uniform(-0.05, 0.05, len(group))
    rows, correct = [], []
    for n in sizes:
        for s in range(seeds):
            accuracy = 1 - (T_ALPHA + T_ETA * n ** T_GAMMA) + rng.normal(0, math.sqrt(V0 + V1 / n))
            correct.append((rng.random(len(group)) < accuracy + shift).astype(float))
            rows.append((n, s))
    correct = np.array(correct)
    runs = pd.DataFrame(rows, columns=["data_size", "seed"]).assign(accuracy=correct.mean(axis=1))
    return runs, fc.TestSet(correct, group)


def test_bands_with_the_test_set_cover_the_accuracy_on_new_data():
    """200 studies of 4 sizes x 3 seeds on one test set each: the band with the test part covers the
    population accuracy at 2x and 4x the largest size at its 95%; the seeds-only band does not."""
    rng, sizes, studies = np.random.default_rng(1), [50, 150, 500, 1500], 200
    targets = np.array([3000, 6000])
    truth = 1 - (T_ALPHA + T_ETA * targets ** T_GAMMA)
    hit, hit_seeds = np.zeros(2), np.zeros(2)
    for i in range(studies):
        runs, test = simulate_tested(rng, sizes, seeds=3)
        p, p_seeds = fc.points(runs, test=test), fc.points(runs)
        both = fc.band(p, fc.fit(p), targets, seed=i)
        seeds_only = fc.band(p_seeds, fc.fit(p_seeds), targets, seed=i, floor=False)
        hit += (both[:, 0] <= truth) & (truth <= both[:, 1])
        hit_seeds += (seeds_only[:, 0] <= truth) & (truth <= seeds_only[:, 1])
    mc = math.sqrt(0.95 * 0.05 / studies)
    print(f"\ncoverage of 95% bands at n = {targets.tolist()} over {studies} studies (Monte Carlo se {mc:.3f}): "
          f"seeds and test set {np.round(hit / studies, 3).tolist()}, seeds only {np.round(hit_seeds / studies, 3).tolist()}")
    assert np.abs(hit / studies - 0.95).max() < 3 * mc  # two-sided: neither too narrow nor too wide
    assert (hit_seeds / studies < 0.95 - 2 * mc).all()  # leaving the test set out misses


@pytest.mark.parametrize("a, b, lo, hi, want", [
    # n^-0.5 = 0.1 n^-0.1  <=>  n^0.4 = 10  <=>  n = 10^2.5
    (fc.Curve(0.0, 1.0, -0.5, 0, 1, 1), fc.Curve(0.0, 0.1, -0.1, 0, 1, 1), 10, 10_000, [10 ** 2.5]),
    (fc.Curve(0.0, 1.0, -0.5, 0, 1, 1), fc.Curve(0.0, 0.1, -0.1, 0, 1, 1), 1000, 10_000, []),
    # 0.2 + 0 = 0.1 + 2 n^-0.5  <=>  n = 400
    (fc.Curve(0.2, 0.0, -0.5, 0, 1, 1), fc.Curve(0.1, 2.0, -0.5, 0, 1, 1), 50, 5000, [400.0]),
])
def test_crossings(a, b, lo, hi, want):
    assert fc.crossings(a, b, lo, hi) == pytest.approx(want, rel=1e-6)
