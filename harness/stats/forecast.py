"""Data-size forecasts: a learning curve fitted to evaluation runs, with bootstrap bands and a backtest.

The error of a run trained on n examples is modelled as error(n) = alpha + eta * n**gamma with
gamma in [-1, 0], fitted by weighted least squares with the seed variance of the error modelled as
v0 + v1 / n (Hoiem et al. 2021, "Learning curves for analysis of deep networks", ICML, sec. 3;
weighting as in Figueroa et al. 2012, BMC Med. Inform. Decis. Mak. 12:8). All functions take the
evaluation runs of ONE combination of the other axes: a DataFrame with columns data_size (an int:
map a size "all" to its training-pool size first), seed and the metric (accuracy by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

MIN_SIZES = 3  # three parameters: with two sizes any curve through the two means fits exactly
HORIZON = 4.0  # Hoiem et al. (2021) find forecasts unreliable beyond ~4x the largest size fitted
LEVEL = 0.95
BOOTSTRAPS = 1000  # the expanded band reaches ~1% into each tail: ~10 replicates beyond each end
VARIANCE_ITERATIONS = 4  # reweighting rounds of the variance model
# the bootstrap refits search gamma on a coarse grid, then a fine one around each replicate's best;
# a step of 0.001 moves a forecast at 4x the largest size by under 1e-4 (eta n^gamma ln 4 step / 2)
COARSE = np.linspace(-1.0, 0.0, 101)
FINE = np.linspace(-0.01, 0.01, 21)


@dataclass(frozen=True)
class Points:
    """The runs reduced to one row per training size."""

    sizes: np.ndarray  # (S,) distinct training sizes, ascending
    seeds: np.ndarray  # (S,) runs at each size
    error: np.ndarray  # (S,) mean error (1 - metric) over the runs at each size
    variance: np.ndarray  # (S,) sample variance (ddof=1) of the error over runs; NaN with one run
    residuals: tuple[np.ndarray, ...]  # per size: run error - mean, times sqrt(k / (k - 1)); 0 for one run


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


@dataclass(frozen=True)
class Forecast:
    curve: Curve | None  # None when the runs hold fewer than MIN_SIZES sizes
    table: pd.DataFrame  # one row per size, observed or forecast (see `forecast`)
    warnings: tuple[str, ...]


def points(runs: pd.DataFrame, metric: str = "accuracy") -> Points:
    runs = runs.dropna(subset=[metric])
    sizes = pd.to_numeric(runs["data_size"], errors="coerce")
    if sizes.isna().any() or (sizes <= 0).any():
        bad = runs["data_size"][sizes.isna() | (sizes <= 0)].iloc[0]
        raise ValueError(f"data_size must be a positive number of training examples, found {bad!r}")
    error = 1.0 - runs[metric].to_numpy(dtype=float)
    by_size = pd.Series(error).groupby(sizes.to_numpy())
    groups = [g.to_numpy() for _, g in by_size]
    # leverage 1/k in the one-way layout (one mean per size): modified residuals r / sqrt(1 - h)
    # give the resampled means the variance s^2 / k (Davison & Hinkley 1997, sec. 6.2.3)
    resid = tuple((g - g.mean()) * math.sqrt(len(g) / (len(g) - 1)) if len(g) > 1 else np.zeros(1)
                  for g in groups)
    return Points(np.array(list(by_size.groups), dtype=float), np.array([len(g) for g in groups]),
                  np.array([g.mean() for g in groups]),
                  np.array([g.var(ddof=1) if len(g) > 1 else math.nan for g in groups]), resid)


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
         new_seeds: int | None = None) -> np.ndarray:
    """(len(sizes), 2) expanded percentile-bootstrap band for the accuracy at each of `sizes`.

    Each replicate redraws every size's runs from the pooled standardised residuals (the modified
    residuals divided by the modelled sd, sqrt(v(n))), rescaled to that size's sd (a size with one
    run gets its noise from the others this way); refits the curve
    with the full fit's weights; and predicts. Pooling is what the variance model buys: with three
    seeds a size, each size alone has 2 degrees of freedom and 10 distinct resamples. The level is
    expanded for the degrees of freedom of the residuals, z_{level'} = t_{df, level}, the "expanded
    percentile interval" of Hesterberg (2015, Am. Stat. 69(4)): percentile intervals are too narrow
    in small samples.
    `new_seeds=None`: a band for the mean accuracy the curve describes. `new_seeds=k`: a band for
    the mean of k fresh runs, each replicate adding a normal draw with the modelled variance v(n)/k.
    Without two runs at any size there is nothing to resample: the band is NaN; with runs that are
    identical at every size it is the fitted value.
    """
    n = np.atleast_1d(np.asarray(sizes, dtype=float))
    df = int((p.seeds - 1).sum())
    if df == 0:
        return np.full((len(n), 2), math.nan)
    if curve.v0 + curve.v1 == 0:  # runs identical at every size: nothing varies
        return np.column_stack([curve.accuracy(n)] * 2)
    rng = np.random.default_rng(seed)
    sd = np.sqrt(curve.variance(p.sizes))
    pooled = np.concatenate([r / s for r, s, k in zip(p.residuals, sd, p.seeds) if k > 1])
    means = np.tile(p.error, (boots, 1))
    for j, k in enumerate(p.seeds):
        means[:, j] += sd[j] * pooled[rng.integers(0, len(pooled), (boots, k))].mean(axis=1)
    alpha, b, gamma = _profile(means, _weights(p, sd ** 2), p.sizes / p.sizes[-1])
    error = alpha[:, None] + b[:, None] * (n[None, :] / p.sizes[-1]) ** gamma[:, None]
    if new_seeds:
        error += rng.standard_normal(error.shape) * np.sqrt(curve.variance(n) / new_seeds)
    tail = stats.norm.sf(stats.t.ppf(0.5 + level / 2, df))
    return 1.0 - np.quantile(error, [1 - tail, tail], axis=0).T


def check(p: Points, targets=()) -> list[str]:
    """Warnings: too few sizes to fit, accuracy falling with size, forecasts past HORIZON x, no spread."""
    out = []
    if len(p.sizes) < MIN_SIZES:
        out.append(f"{len(p.sizes)} training size(s) ({', '.join(str(int(n)) for n in p.sizes)}): a curve "
                   f"needs at least {MIN_SIZES}, so none is fitted")
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
             level: float = LEVEL, boots: int = BOOTSTRAPS, seed: int = 0) -> Forecast:
    """The fitted curve at every observed size and at `sizes` (default 2x and 4x the largest, and the pool).

    Table columns: size; runs and observed (mean metric, NaN where not run); fitted; lo, hi (the band
    for the curve's mean); pred_lo, pred_hi (the band for the mean of as many fresh runs as the
    largest size had); beyond (past HORIZON x the largest size fitted).
    """
    p = points(runs, metric)
    if sizes is None:
        sizes = [2 * p.sizes[-1], 4 * p.sizes[-1]] + ([pool_size] if pool_size else [])
    targets = sorted({int(n) for n in sizes} - {int(n) for n in p.sizes})
    warnings = check(p, targets)
    if len(p.sizes) < MIN_SIZES:
        return Forecast(None, pd.DataFrame(), tuple(warnings))
    curve = fit(p)
    bound = -1 if curve.gamma < -1 + 1e-6 else 0 if curve.gamma > -1e-6 else None
    if curve.eta > 0 and bound is not None:
        warnings.append(f"gamma is at its bound {bound}: the data bend {'faster' if bound else 'slower'} than a "
                        f"power law in [-1, 0] allows; check the fitted values against the observed means")
    n = np.concatenate([p.sizes, targets])
    mean_band = band(p, curve, n, level, boots, seed)
    new_band = band(p, curve, n, level, boots, seed, new_seeds=int(p.seeds[-1]))
    table = pd.DataFrame({"size": n.astype(int), "runs": np.concatenate([p.seeds, np.zeros(len(targets), int)]),
                          "observed": np.concatenate([1 - p.error, np.full(len(targets), math.nan)]),
                          "fitted": curve.accuracy(n), "lo": mean_band[:, 0], "hi": mean_band[:, 1],
                          "pred_lo": new_band[:, 0], "pred_hi": new_band[:, 1], "beyond": n > HORIZON * p.sizes[-1]})
    return Forecast(curve, table, tuple(warnings))


def backtest(runs: pd.DataFrame, metric: str = "accuracy", level: float = LEVEL, boots: int = BOOTSTRAPS,
             seed: int = 0) -> dict:
    """Hide the largest size, fit on the rest, predict it: error, and whether its mean fell in the band.

    The band is the one for the mean of as many fresh runs as the hidden size had (`band`, new_seeds).
    """
    p = points(runs, metric)
    hidden = p.sizes[-1] if len(p.sizes) else math.nan
    rest = runs[pd.to_numeric(runs["data_size"]) < hidden]
    out = {"hidden": int(hidden) if len(p.sizes) else None,
           "observed": float(1 - p.error[-1]) if len(p.sizes) else math.nan}
    if len(p.sizes) - 1 < MIN_SIZES:
        return out | {"warning": f"backtest needs {MIN_SIZES + 1} sizes (fit on {MIN_SIZES}, predict 1), "
                                 f"got {len(p.sizes)}"}
    q = points(rest, metric)
    curve = fit(q)
    lo, hi = band(q, curve, [hidden], level, boots, seed, new_seeds=int(p.seeds[-1]))[0]
    predicted = float(curve.accuracy(hidden))
    return out | {"predicted": predicted, "error": predicted - out["observed"], "lo": float(lo), "hi": float(hi),
                  "inside": bool(lo <= out["observed"] <= hi), "ratio": float(hidden / q.sizes[-1])}


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
