"""Data-size forecasts: a learning curve fitted to evaluation runs, with bootstrap bands and backtests.

The error of a run trained on n examples is modelled as error(n) = alpha + eta * n**gamma with
gamma in [-1, 0], fitted by weighted least squares with the seed variance of the error modelled as
v0 + v1 / n (Hoiem et al. 2021, "Learning curves for analysis of deep networks", ICML, sec. 3;
weighting as in Figueroa et al. 2012, BMC Med. Inform. Decis. Mak. 12:8). Three parameters: a
curve needs at least MIN_SIZES = 4 sizes. Bands resample seeds and, given each run's per-example
results (`TestSet`), draw the test set's shift with them (its clustered covariance); a band beyond the
data is never narrower than the largest observed size's own interval. All functions take the
evaluation runs of ONE combination of the other axes: a DataFrame with columns data_size (an int:
map a size "all" to its training-pool size first), seed and the metric (accuracy by default).
Methods and their checks: docs/methods.md, "Forecasts".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from harness.stats import grid_model, verdicts

# a curve of three parameters through three sizes passes through every mean: nothing is left to
# check it by, and its band only says how the three means move. A fourth size is the least that
# tests the shape.
MIN_SIZES = 4
HORIZON = 4.0  # Hoiem et al. (2021) find forecasts unreliable beyond ~4x the largest size fitted
LEVEL = 0.95
BOOTSTRAPS = 1000  # the expanded band reaches ~1% into each tail: ~10 replicates beyond each end
VARIANCE_ITERATIONS = 4  # reweighting rounds of the variance model
# the bootstrap refits search gamma on a coarse grid, then a fine one around each replicate's best;
# a step of 0.001 moves a forecast at 4x the largest size by under 1e-4 (eta n^gamma ln 4 step / 2)
COARSE = np.linspace(-1.0, 0.0, 101)
FINE = np.linspace(-0.01, 0.01, 21)


@dataclass(frozen=True)
class TestSet:
    """Every run's per-example correctness on one shared test set, and the examples' groups (reviews)."""

    correct: np.ndarray  # (R, N) 1.0 right, 0.0 wrong; row r is row r of the runs frame (NaN: left out)
    groups: np.ndarray  # (N,) group of each example


@dataclass(frozen=True)
class Points:
    """The runs reduced to one row per training size."""

    sizes: np.ndarray  # (S,) distinct training sizes, ascending
    seeds: np.ndarray  # (S,) runs at each size
    error: np.ndarray  # (S,) mean error (1 - metric) over the runs at each size
    variance: np.ndarray  # (S,) sample variance (ddof=1) of the error over runs; NaN with one run
    residuals: tuple[np.ndarray, ...]  # per size: run error - mean, times sqrt(k / (k - 1)); 0 for one run
    test_cov: np.ndarray | None = None  # (S, S) test-set covariance of the per-size mean accuracies (None: no TestSet)
    test_groups: int = 0  # groups in the test set


@dataclass(frozen=True)
class Curve:
    """error(n) = alpha + eta * n**gamma; seed variance of one run's error v0 + v1 / n."""

    alpha: float  # error as n grows without bound
    eta: float
    gamma: float  # in [-1, 0]
    v0: float
    v1: float
    largest: int  # largest training size fitted

    def error(self, n) -> np.ndarray:
        return self.alpha + self.eta * np.asarray(n, dtype=float) ** self.gamma

    def accuracy(self, n) -> np.ndarray:
        return 1.0 - self.error(n)

    def variance(self, n) -> np.ndarray:
        return self.v0 + self.v1 / np.asarray(n, dtype=float)

    @property
    def bound(self) -> int | None:
        """-1 or 0 when the fitted exponent sits on that end of [-1, 0] (and the curve bends at all)."""
        if self.eta <= 0:
            return None
        return -1 if self.gamma < -1 + 1e-6 else 0 if self.gamma > -1e-6 else None


@dataclass(frozen=True)
class Forecast:
    curve: Curve | None  # None when the runs hold fewer than MIN_SIZES sizes
    table: pd.DataFrame  # one row per size, observed or forecast (see `forecast`)
    warnings: tuple[str, ...]
    observed: tuple[float, float] = (math.nan, math.nan)  # the largest size's own interval (see `observed_interval`)


def points(runs: pd.DataFrame, metric: str = "accuracy", test: TestSet | None = None) -> Points:
    """Per size: runs, mean error, variance, residuals; with `test`, the metric is each run's accuracy
    on it (its row's mean), and the sizes' test-set covariance comes with them."""
    correct = None
    if test is not None:
        correct = np.asarray(test.correct, dtype=float)
        if correct.ndim != 2 or len(correct) != len(runs) or correct.shape[1] != len(test.groups):
            raise ValueError(f"test.correct must be (runs, examples) = ({len(runs)}, {len(test.groups)}), "
                             f"got {correct.shape}")
        with np.errstate(invalid="ignore"):
            runs = runs.assign(**{metric: correct.mean(axis=1)})
    keep = runs[metric].notna().to_numpy()
    runs = runs[keep]
    sizes = pd.to_numeric(runs["data_size"], errors="coerce")
    if sizes.isna().any() or (sizes <= 0).any():
        bad = runs["data_size"][sizes.isna() | (sizes <= 0)].iloc[0]
        raise ValueError(f"data_size must be a positive number of training examples, found {bad!r}")
    error = 1.0 - runs[metric].to_numpy(dtype=float)
    unique, run_size = np.unique(sizes.to_numpy(dtype=float), return_inverse=True)
    groups = [error[run_size == j] for j in range(len(unique))]
    # leverage 1/k in the one-way layout (one mean per size): modified residuals r / sqrt(1 - h)
    # give the resampled means the variance s^2 / k (Davison & Hinkley 1997, sec. 6.2.3)
    resid = tuple((g - g.mean()) * math.sqrt(len(g) / (len(g) - 1)) if len(g) > 1 else np.zeros(1)
                  for g in groups)
    test_cov, n_groups = None, 0
    if correct is not None:
        test_cov, df = _test_covariance(correct[keep], run_size, len(unique), np.asarray(test.groups))
        n_groups = int(df) + 1
    return Points(unique, np.array([len(g) for g in groups]), np.array([g.mean() for g in groups]),
                  np.array([g.var(ddof=1) if len(g) > 1 else math.nan for g in groups]), resid, test_cov, n_groups)


def _test_covariance(correct: np.ndarray, run_size: np.ndarray, sizes: int, groups: np.ndarray) -> tuple[np.ndarray, float]:
    """(S, S) covariance of the per-size mean accuracies over the test set, clustered by group: the grid
    model's test part (harness.stats.grid_model.cluster_covariance), sizes in the place of cells.

    From products of distinct runs only: a run's own luck on single examples is in its accuracy,
    hence already in the seed residuals that the bootstrap resamples, and would count twice.
    """
    centred = correct - correct.mean(axis=1, keepdims=True)
    U = grid_model.cluster_sums(centred, groups)  # (R, G)
    G, N = U.shape[1], correct.shape[1]
    scale = G / (G - 1) / N ** 2 if G > 1 else math.nan
    return grid_model.nearest_psd(grid_model.cell_covariance(U, run_size, sizes, scale)), float(G - 1)


def variance_model(p: Points) -> tuple[float, float]:
    """(v0, v1) of v(n) = v0 + v1 / n, fitted to the per-size sample variances.

    A sample variance on k runs has variance 2 v^2 / (k - 1) (chi-square), so the fit is
    non-negative least squares (scipy nnls) reweighted by (k - 1) / v(n)^2 a few times: unweighted,
    the large variances of the smallest sizes decide the small ones that forecasts depend on.
    Without a spread to fit (one run per size, or identical runs) it is (0, 0).
    """
    has = p.seeds > 1
    if not has.any():
        return 0.0, 0.0
    design, target = np.column_stack([np.ones(has.sum()), 1.0 / p.sizes[has]]), p.variance[has]
    v = np.full(len(target), max(target.mean(), 1e-300))
    for _ in range(VARIANCE_ITERATIONS):
        scale = np.sqrt(p.seeds[has] - 1) / v
        (v0, v1), _ = optimize.nnls(design * scale[:, None], target * scale)
        if v0 + v1 <= 0:
            return 0.0, 0.0
        v = np.maximum(v0 + v1 / p.sizes[has], 1e-12 * target.max())
    return float(v0), float(v1)


def fit(p: Points) -> Curve:
    """Weighted least squares with weights k / v(n), bounded by scipy.optimize.least_squares.

    The start is the best point of a profile over a grid of gamma (alpha and eta are then linear),
    so the bounded local search cannot stop in a worse local minimum.
    """
    if len(p.sizes) < MIN_SIZES:
        raise ValueError(f"need at least {MIN_SIZES} distinct training sizes to fit, got {len(p.sizes)}")
    v0, v1 = variance_model(p)
    w = _weights(p, v0 + v1 / p.sizes)
    x = p.sizes / p.sizes[-1]  # scaled sizes keep eta of order one
    a, b, g = _profile(p.error[None, :], w, x)
    sw = np.sqrt(w)

    def residual(q):
        return sw * (q[0] + q[1] * x ** q[2] - p.error)

    def jacobian(q):
        power = x ** q[2]
        return np.column_stack([sw, sw * power, sw * q[1] * power * np.log(x)])

    start = np.clip([a[0], b[0], g[0]], [0, 0, -1], [np.inf, np.inf, 0])
    q = optimize.least_squares(residual, start, jac=jacobian, bounds=([0, 0, -1], [np.inf, np.inf, 0])).x
    return Curve(float(q[0]), float(q[1] * p.sizes[-1] ** -q[2]), float(q[2]), v0, v1, int(p.sizes[-1]))


def _weights(p: Points, variance: np.ndarray) -> np.ndarray:
    """k / v(n); without a modelled spread, k * n: the 1/n shape of a binomial variance."""
    return p.seeds / variance if (variance > 0).all() else p.seeds * p.sizes


def _profile(means: np.ndarray, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, b, gamma) per row of `means` (B, S): the best bounded linear fit over a grid of gamma.

    A coarse grid (step 0.01) finds each replicate's region, a fine one (step 0.001) around it the
    gamma. Written by hand: vectorised over bootstrap replicates it is ~1000x faster than one
    least_squares call per replicate, and it cannot stop in a local minimum.
    """
    _, _, cost = _linear(means, w, x[None, None, :] ** COARSE[None, :, None])
    gamma = np.clip(COARSE[cost.argmin(axis=1)][:, None] + FINE[None, :], -1.0, 0.0)  # (B, F)
    alpha, b, cost = _linear(means, w, x[None, None, :] ** gamma[:, :, None])
    rows, pick = np.arange(len(means)), cost.argmin(axis=1)
    return alpha[rows, pick], b[rows, pick], gamma[rows, pick]


def _linear(y: np.ndarray, w: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, b, cost), each (B, G): weighted least squares of y (B, S) on alpha + b z (B or 1, G, S).

    With alpha, b >= 0: the free fit when it is feasible, else the better of the fits on the edges
    alpha = 0 and b = 0 (a convex problem whose free minimum is infeasible has its constrained
    minimum on the boundary). Each candidate solves its normal equations, so its weighted sum of
    squares is sum w y^2 minus its coefficients times X'Wy.
    """
    sw, swz, swzz = w.sum(), z @ w, (z * z) @ w  # scalar, (B|1, G), (B|1, G)
    swy, swyy = (y @ w)[:, None], ((y * y) @ w)[:, None]  # (B, 1)
    swzy = np.matmul(z, (w * y)[:, :, None])[..., 0]  # (B, G)
    det = sw * swzz - swz ** 2
    ok = det > 1e-12 * sw * swzz  # det = 0 at gamma = 0, where alpha and b are one parameter
    b_free = np.where(ok, sw * swzy - swz * swy, 0.0) / np.where(ok, det, 1.0)
    a_free = (swy - b_free * swz) / sw
    ok = ok & (a_free >= 0) & (b_free >= 0)
    b_edge, a_edge = np.maximum(swzy / swzz, 0.0), np.maximum(swy / sw, 0.0)  # alpha = 0; b = 0
    gain_free = np.where(ok, a_free * swy + b_free * swzy, -np.inf)
    gain_a0, gain_b0 = b_edge * swzy, a_edge * swy
    use_a0 = gain_a0 >= gain_b0
    free = gain_free >= np.where(use_a0, gain_a0, gain_b0)
    alpha = np.where(free, a_free, np.where(use_a0, 0.0, a_edge))
    b = np.where(free, b_free, np.where(use_a0, b_edge, 0.0))
    return alpha, b, swyy - np.maximum(gain_free, np.maximum(gain_a0, gain_b0))


def band(p: Points, curve: Curve, sizes, level: float = LEVEL, boots: int = BOOTSTRAPS, seed: int = 0,
         new_seeds: int | None = None, floor: bool = True) -> np.ndarray:
    """(len(sizes), 2) expanded percentile-bootstrap band for the accuracy at each of `sizes`.

    Each replicate redraws every size's runs from the pooled standardised residuals (the modified
    residuals divided by the modelled sd, sqrt(v(n))), rescaled to that size's sd (a size with one
    run gets its noise from the others this way); refits the curve with the full fit's weights; and
    predicts. Pooling is what the variance model buys: with three seeds a size, each size alone has
    2 degrees of freedom and 10 distinct resamples. With a TestSet (`points(..., test=)`), each
    replicate also draws the test set's shift of every size's mean at once, normal with their
    clustered covariance (`_test_covariance`), so that the band is for the accuracy on new test data,
    not on this test set: a shift of the whole test set moves every observed mean, and the forecast
    with them. (Resampling the test groups themselves would count each run's luck on single
    examples twice, in the residuals and in the redrawn groups: 99.5% coverage for a 95% band in the
    simulations of tests/test_forecast.py.) The level is expanded for the degrees of freedom of
    the residuals, z_{level'} = t_{df, level}, the "expanded percentile interval" of Hesterberg
    (2015, Am. Stat. 69(4)): percentile intervals are too narrow in small samples; with a test part,
    df is the Welch-Satterthwaite df of the two parts' variances among the replicates (the residuals'
    df and the test groups' G - 1), so that the 59 df of the test part are not expanded as if 8.
    `new_seeds=None`: a band for the mean accuracy the curve describes. `new_seeds=k`: a band for
    the mean of k fresh runs, each replicate adding a normal draw with the modelled variance v(n)/k.
    `floor`: a band past the largest size fitted is widened, about the fitted value, to the width
    of that size's own interval (`observed_interval`) where it is narrower: the curve's shape lends
    the forecast no certainty the data do not have at their largest size.
    Without two runs at any size there is nothing to resample: the band is NaN; with runs that are
    identical at every size (and no test set) it is the fitted value.
    """
    n = np.atleast_1d(np.asarray(sizes, dtype=float))
    df = int((p.seeds - 1).sum())
    if df == 0:
        return np.full((len(n), 2), math.nan)
    if curve.v0 + curve.v1 == 0 and p.test_cov is None:  # runs identical at every size: nothing varies
        return np.column_stack([curve.accuracy(n)] * 2)
    rng = np.random.default_rng(seed)
    sd = np.sqrt(curve.variance(p.sizes))
    means = np.tile(p.error, (boots, 1))
    if curve.v0 + curve.v1 > 0:
        pooled = np.concatenate([r / s for r, s, k in zip(p.residuals, sd, p.seeds) if k > 1])
        for j, k in enumerate(p.seeds):
            means[:, j] += sd[j] * pooled[rng.integers(0, len(pooled), (boots, k))].mean(axis=1)
    weights, x = _weights(p, sd ** 2), p.sizes / p.sizes[-1]
    error = _predict(means, weights, x, n / p.sizes[-1])
    tail = np.full(len(n), stats.norm.sf(stats.t.ppf(0.5 + level / 2, df)))
    if p.test_cov is not None:  # one draw of the test set's shift per replicate, shared by every size
        seeds_only = error.var(axis=0)
        means += rng.multivariate_normal(np.zeros(len(p.sizes)), p.test_cov, boots, method="eigh")
        error = _predict(means, weights, x, n / p.sizes[-1])
        # the expansion for the df of the whole: the seed part's residual df, the test part's G - 1
        parts = np.stack([seeds_only, np.maximum(error.var(axis=0) - seeds_only, 0.0)], axis=-1)
        whole = grid_model.satterthwaite(parts, np.array([df, p.test_groups - 1]))
        tail = stats.norm.sf(stats.t.ppf(0.5 + level / 2, whole))
    if new_seeds:
        error += rng.standard_normal(error.shape) * np.sqrt(curve.variance(n) / new_seeds)
    out = 1.0 - np.stack([np.quantile(error[:, j], [1 - t, t]) for j, t in enumerate(tail)])
    return _floored(out, curve.accuracy(n), n > p.sizes[-1], observed_interval(p, level)) if floor else out


def _predict(means: np.ndarray, weights: np.ndarray, x: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(B, len(at)) error of each replicate's refitted curve at sizes `at` (scaled as x)."""
    alpha, b, gamma = _profile(means, weights, x)
    return alpha[:, None] + b[:, None] * at[None, :] ** gamma[:, None]


def observed_interval(p: Points, level: float = LEVEL) -> tuple[float, float]:
    """The largest size's own interval for its mean accuracy, as the report's cells table makes one.

    Variance: the runs' sample variance / runs, plus, with a TestSet, the cluster-robust (CR1)
    variance of their mean over the test groups (own products included: a little wider than the
    grid model's); Welch-Satterthwaite df; on the logit scale (harness.stats.verdicts.logit_interval).
    NaN without two runs there.
    """
    k, mean = int(p.seeds[-1]), 1.0 - p.error[-1]
    if k < 2:
        return math.nan, math.nan
    var_seed, var_test, df_test, G = p.variance[-1] / k, 0.0, math.inf, math.inf
    if p.test_cov is not None:
        var_test, G = float(p.test_cov[-1, -1]), p.test_groups
        df_test = G - 1
    df = verdicts.satterthwaite_pair(var_seed, var_test, k - 1, df_test)
    lo, hi = verdicts.logit_interval(mean, math.sqrt(var_seed + var_test), verdicts.critical(1 - level, df), G)
    return float(lo), float(hi)


def _floored(band_: np.ndarray, fitted: np.ndarray, beyond: np.ndarray, interval: tuple[float, float]) -> np.ndarray:
    """Bands past the data no narrower than `interval`: widened about the fitted value where they are."""
    width = interval[1] - interval[0]
    if not math.isfinite(width):
        return band_
    out = band_.copy()
    short = beyond & (out[:, 1] - out[:, 0] < width)
    out[short, 0] = np.minimum(out[short, 0], fitted[short] - width / 2)
    out[short, 1] = np.maximum(out[short, 1], fitted[short] + width / 2)
    return out


def check(p: Points, targets=()) -> list[str]:
    """Warnings: too few sizes to fit, accuracy falling with size, forecasts past HORIZON x, no spread."""
    out = []
    if len(p.sizes) < MIN_SIZES:
        out.append(f"{len(p.sizes)} training size(s) ({', '.join(str(int(n)) for n in p.sizes)}): a curve of 3 "
                   f"parameters needs at least {MIN_SIZES} (through 3 sizes or fewer it passes every mean, and nothing "
                   "is left to check its shape by), so none is fitted")
        return out
    for n0, n1, e0, e1 in zip(p.sizes, p.sizes[1:], p.error, p.error[1:]):
        if e1 > e0:
            out.append(f"not monotone: mean accuracy falls from {1 - e0:.3f} at n={int(n0)} to {1 - e1:.3f} at "
                       f"n={int(n1)}")
    far = [int(n) for n in targets if p.sizes.size and n > HORIZON * p.sizes[-1]]
    if far:
        out.append(f"forecast at n={', '.join(map(str, far))} is beyond {HORIZON:g}x the largest size fitted "
                   f"({int(p.sizes[-1])}): learning-curve forecasts are unreliable that far out")
    if len(p.sizes) and (p.seeds == 1).all():
        out.append("one run at every size: no seed spread to resample, so no bands")
    return out


def forecast(runs: pd.DataFrame, sizes=None, pool_size: int | None = None, metric: str = "accuracy",
             level: float = LEVEL, boots: int = BOOTSTRAPS, seed: int = 0, test: TestSet | None = None,
             interval: tuple[float, float] | None = None) -> Forecast:
    """The fitted curve at every observed size and at `sizes` (default 2x and 4x the largest, and the pool).

    Table columns: size; runs and observed (mean metric, NaN where not run); fitted; lo, hi (the band
    for the curve's mean, with the test set's sampling when `test` is given); pred_lo, pred_hi (the
    band for the mean of as many fresh runs as the largest size had); floored (a band widened to the
    largest size's own interval); beyond (past HORIZON x the largest size fitted). `interval`: the
    largest size's own interval as the caller gives it (the report: its cells table's); by default
    `observed_interval`.
    """
    p = points(runs, metric, test)
    if sizes is None:
        sizes = [2 * p.sizes[-1], 4 * p.sizes[-1]] + ([pool_size] if pool_size else [])
    targets = sorted({int(n) for n in sizes} - {int(n) for n in p.sizes})
    warnings = check(p, targets)
    if len(p.sizes) < MIN_SIZES:
        return Forecast(None, pd.DataFrame(), tuple(warnings))
    curve = fit(p)
    if curve.bound is not None:
        warnings.append(f"gamma is at its bound {curve.bound}: the data bend {'faster' if curve.bound else 'slower'} "
                        "than a power law in [-1, 0] allows; check the fitted values against the observed means")
    n = np.concatenate([p.sizes, targets])
    raw = band(p, curve, n, level, boots, seed, floor=False)
    interval = interval or observed_interval(p, level)
    mean_band = _floored(raw, curve.accuracy(n), n > p.sizes[-1], interval)
    new_band = _floored(band(p, curve, n, level, boots, seed, new_seeds=int(p.seeds[-1]), floor=False),
                        curve.accuracy(n), n > p.sizes[-1], interval)
    table = pd.DataFrame({"size": n.astype(int), "runs": np.concatenate([p.seeds, np.zeros(len(targets), int)]),
                          "observed": np.concatenate([1 - p.error, np.full(len(targets), math.nan)]),
                          "fitted": curve.accuracy(n), "lo": mean_band[:, 0], "hi": mean_band[:, 1],
                          "pred_lo": new_band[:, 0], "pred_hi": new_band[:, 1],
                          "floored": np.any(mean_band != raw, axis=1), "beyond": n > HORIZON * p.sizes[-1]})
    return Forecast(curve, table, tuple(warnings), interval)


def holdout(runs: pd.DataFrame, fit_upto: float, metric: str = "accuracy", level: float = LEVEL,
            boots: int = BOOTSTRAPS, seed: int = 0, test: TestSet | None = None) -> pd.DataFrame:
    """Fit on the sizes up to `fit_upto`, predict every larger observed size: one row per such size.

    Columns: size, runs, observed (its mean), predicted, error (predicted - observed), lo, hi (the
    band for the mean of as many fresh runs as that size had, `band` with new_seeds, floored), inside,
    ratio (the size over the largest size fitted). ValueError with fewer than MIN_SIZES sizes to fit.
    """
    sizes = pd.to_numeric(runs["data_size"]).to_numpy(dtype=float)
    fitted = sizes <= fit_upto
    sub = None if test is None else TestSet(np.asarray(test.correct)[fitted], test.groups)
    q = points(runs[fitted], metric, sub)
    if len(q.sizes) < MIN_SIZES:
        raise ValueError(f"{len(q.sizes)} size(s) up to {fit_upto:,.0f} ({', '.join(f'{int(n):,}' for n in q.sizes)}): "
                         f"a curve needs {MIN_SIZES}")
    curve, p = fit(q), points(runs, metric, test)
    rows = []
    for size, k, error in zip(p.sizes, p.seeds, p.error):
        if size <= q.sizes[-1]:
            continue
        lo, hi = band(q, curve, [size], level, boots, seed, new_seeds=int(k))[0]
        predicted, observed = float(curve.accuracy(size)), 1.0 - float(error)
        rows.append({"size": int(size), "runs": int(k), "observed": observed, "predicted": predicted,
                     "error": predicted - observed, "lo": float(lo), "hi": float(hi),
                     "inside": bool(lo <= observed <= hi), "ratio": float(size / q.sizes[-1])})
    return pd.DataFrame(rows, columns=["size", "runs", "observed", "predicted", "error", "lo", "hi", "inside", "ratio"])


def backtest(runs: pd.DataFrame, ratio: float | None = None, metric: str = "accuracy", level: float = LEVEL,
             boots: int = BOOTSTRAPS, seed: int = 0, test: TestSet | None = None) -> dict:
    """Predict the largest observed size from the smaller ones: error, and whether its mean fell in the band.

    `ratio`: fit on the sizes up to largest / ratio only, so that the backtest extrapolates as far
    as the forecast it checks (a forecast at 4x the largest size is checked by predicting the
    largest from a quarter of it); None: hide the largest size alone. The band is `holdout`'s.
    """
    p = points(runs, metric)
    if not len(p.sizes):
        return {"hidden": None, "observed": math.nan, "wanted": ratio, "warning": "no runs"}
    hidden = p.sizes[-1]
    out = {"hidden": int(hidden), "observed": float(1 - p.error[-1]), "wanted": ratio}
    upto = hidden / ratio * (1 + 1e-9) if ratio else (p.sizes[-2] if len(p.sizes) > 1 else 0.0)
    below = p.sizes[p.sizes <= upto]
    if len(below) < MIN_SIZES:
        listed = ", ".join(f"{int(n):,}" for n in below) or "none"
        why = (f"a backtest at {ratio:.1f}x (the forecast's own reach) would fit the sizes up to {hidden / ratio:,.0f}: "
               f"{len(below)} of them ({listed}), and a curve needs {MIN_SIZES}") if ratio else \
            f"backtest needs {MIN_SIZES + 1} sizes (fit on {MIN_SIZES}, predict 1), got {len(p.sizes)}"
        return out | {"warning": why}
    row = holdout(runs, below[-1], metric, level, boots, seed, test).iloc[-1]
    return out | {k: float(row[k]) for k in ("predicted", "error", "lo", "hi", "ratio")} | {"inside": bool(row["inside"])}


def crossings(a: Curve, b: Curve, lo: float, hi: float, grid: int = 2000) -> list[float]:
    """Training sizes in [lo, hi] where the fitted curves of two configurations cross (scipy brentq).

    The difference of two such curves changes sign at most twice; a fine log-spaced grid finds
    each sign change and brentq pins it down.
    """
    n = np.geomspace(lo, hi, grid)
    d = a.error(n) - b.error(n)
    roots = [float(n[i]) for i in np.flatnonzero(d == 0)]
    for i in np.flatnonzero(d[:-1] * d[1:] < 0):
        roots.append(optimize.brentq(lambda m: float(a.error(m) - b.error(m)), n[i], n[i + 1]))
    return sorted(roots)
