"""Simultaneous and bounded intervals for grid estimates, the verdict they give, what would decide.

- simultaneous (1 - alpha) intervals per family by max-t (Hothorn, Bretz & Westfall 2008), each
  estimate with the t quantile of its own Satterthwaite df; Sidak where max-t cannot resolve;
- intervals in the range of what they estimate: logit for a mean, atanh for a difference;
- verdicts: better / worse (the interval excludes 0), equivalent (inside +-delta), undecided,
  with the seeds or test set that would decide (planned from delta, never from the estimate);
- Holm's step-down p-values, and the power of a contrast.
Details and sources: docs/methods.md, "Intervals and verdicts".
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import special, stats

ALPHA = 0.05
DELTA = 0.01  # smallest effect of interest, in accuracy
DRAWS = 20_000  # Monte Carlo draws of max |Z|: its 95% quantile to about 0.01 (one Monte Carlo se)
MC_FLOOR = 50  # draws beyond the max-t quantile below which Sidak's level is used instead


@lru_cache(maxsize=8)
def _normal_draws(m: int, draws: int, seed: int) -> np.ndarray:
    """(draws, m) standard normals, the same for every call with these arguments (deterministic)."""
    out = np.random.default_rng(seed).standard_normal((draws, m))
    out.flags.writeable = False
    return out


def max_abs_draws(corr: np.ndarray, draws: int | None = None, seed: int = 0) -> np.ndarray:
    """Sorted Monte Carlo draws of max_k |Z_k|, Z ~ N(0, corr) (corr may be singular), for one family
    (``draws``: DRAWS unless given)."""
    draws = draws or DRAWS
    vals, vecs = np.linalg.eigh(np.atleast_2d(corr))
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    return np.sort(np.abs(_normal_draws(len(root), draws, seed) @ root.T).max(axis=1))


def family_level(corr: np.ndarray, alpha: float = ALPHA, top: np.ndarray | None = None, draws: int | None = None,
                 seed: int = 0) -> float:
    """Per-estimate two-sided level at which K estimates with correlation `corr` are covered jointly 1 - alpha.

    Max-t by Monte Carlo (`top`: the family's max_abs_draws, when already drawn) while at least
    MC_FLOOR draws lie beyond the quantile. For independent estimates, and at an alpha too small
    for the draws (an early look of adaptive seeds), Sidak's level 1 - (1 - alpha)^(1/K): exact
    for independent estimates, valid for any correlation of normal ones (Sidak 1967), and close
    to max-t in the far tail, where joint exceedances are rare.
    """
    corr = np.atleast_2d(corr)
    if len(corr) <= 1:
        return alpha
    draws = (draws or DRAWS) if top is None else len(top)
    if np.allclose(corr, np.eye(len(corr)), atol=1e-12) or alpha * draws < MC_FLOOR:
        return sidak(alpha, len(corr))
    top = max_abs_draws(corr, draws, seed) if top is None else top
    return float(2 * stats.norm.sf(np.quantile(top, 1 - alpha)))


def family_p(p: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Max-t adjusted p: the share of the family's max |Z| draws `top` beyond each estimate's |z|."""
    p = np.asarray(p, dtype=float)
    if len(p) <= 1:
        return p.copy()
    return 1 - np.searchsorted(top, stats.norm.isf(p / 2), side="left") / len(top)


def correlation(cov: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.diag(cov))
    return cov / np.outer(sd, sd)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and are not in the family.

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (m - j + 1) p_(j)). Written by hand:
    scipy.stats.false_discovery_control does Benjamini-Hochberg/Yekutieli only.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def sidak(alpha: float, k: int) -> float:
    """Per-estimate level 1 - (1 - alpha)^(1/k) (Sidak 1967), accurate at tiny alpha."""
    return float(-np.expm1(np.log1p(-alpha) / max(k, 1)))


def critical(level: float, df: np.ndarray) -> np.ndarray:
    """Two-sided t critical values at `level` for each df (inf df: the normal quantile)."""
    return stats.t.isf(level / 2, np.asarray(df, dtype=float))


def logit_interval(p: np.ndarray, se: np.ndarray, crit: np.ndarray, n_boundary: float) -> tuple[np.ndarray, np.ndarray]:
    """An interval in [0, 1] for a mean in [0, 1]: logit(p) +- crit se / (p (1 - p)), mapped back.

    At p = 0 or 1 the delta method has no slope; there the Wilson (1927) interval with
    `n_boundary` independent units (e.g. the test set's groups) and z = crit is used.
    """
    p, se, crit = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (p, se, crit)))
    with np.errstate(divide="ignore", invalid="ignore"):
        centre, half = special.logit(p), crit * se / (p * (1 - p))
        lo, hi = special.expit(centre - half), special.expit(centre + half)
    wilson = crit ** 2 / (n_boundary + crit ** 2)
    lo = np.where(p == 0, 0.0, np.where(p == 1, 1 - wilson, lo))
    hi = np.where(p == 0, wilson, np.where(p == 1, 1.0, hi))
    return lo, hi


def atanh_interval(d: np.ndarray, se: np.ndarray, crit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An interval in [-1, 1] for a difference in [-1, 1]: atanh(d) +- crit se / (1 - d^2), mapped by tanh.

    |d| = 1 has no slope: the interval is the point when se = 0, else NaN.
    """
    d, se, crit = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (d, se, crit)))
    with np.errstate(divide="ignore", invalid="ignore"):
        centre, half = np.arctanh(d), crit * se / (1 - d ** 2)
        lo, hi = np.tanh(centre - half), np.tanh(centre + half)
    edge = np.abs(d) >= 1
    point = edge & (se == 0)
    return np.where(point, d, np.where(edge, np.nan, lo)), np.where(point, d, np.where(edge, np.nan, hi))


def atanh_p(d: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided t p-value on the atanh scale, so that p < level exactly when the interval excludes 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.arctanh(np.asarray(d, dtype=float)) * (1 - np.asarray(d, dtype=float) ** 2) / se
    return np.where(np.asarray(se) == 0, np.where(np.asarray(d) == 0, 1.0, 0.0), 2 * stats.t.sf(np.abs(t), df))


def verdict(lo: float, hi: float, delta: float = DELTA) -> str:
    """better / worse (interval excludes 0), equivalent (inside +-delta), or undecided."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undecided: no interval (one seed per cell has no seed variance)"
    if lo > 0 or hi < 0:
        word = "better" if lo > 0 else "worse"
        return f"{word}, by less than {delta:g}" if -delta < lo and hi < delta else word
    if -delta < lo and hi < delta:
        return f"equivalent within ±{delta:g}"
    return "undecided"


def plan(var_seed: float, var_test: float, seeds: float, df_seed: float, df_test: float, level: float,
         delta: float = DELTA, var_search: float = 0.0) -> tuple[float, float]:
    """(seeds per cell, test-set multiple in groups) that bring the half-width below delta / 2.

    A half-width under delta / 2 decides whatever the effect: the interval then either
    excludes 0 or lies inside +-delta. The seed part shrinks as 1 / seeds and its df grow as
    seeds - 1; the test part shrinks as 1 / groups. Seeds alone when they can do it (multiple
    1); else a larger test set with today's seeds when that suffices; else twice the test set
    that infinitely many seeds would need, and the seeds that then suffice. `level` is the
    family's per-estimate level, so the plan is for the same verdict.
    """
    if not all(math.isfinite(v) for v in (var_seed, var_test, seeds, df_seed, level)) or seeds <= 1:
        return math.nan, math.nan
    # rounding (the test part is a difference of covariances) can leave a variance a hair below 0
    var_seed, var_test = max(var_seed, 0.0), max(var_test, 0.0)

    var_search = max(var_search, 0.0) if math.isfinite(var_search) else 0.0

    def narrow(s: float, k: float) -> bool:
        vs, vt = var_seed * seeds / s, var_test / k
        df = float(satterthwaite_pair(vs, vt, df_seed * (s - 1) / (seeds - 1), (df_test + 1) * k - 1))
        return float(stats.t.isf(level / 2, df)) * math.sqrt(vs + vt + var_search) < delta / 2

    if not narrow(math.inf, math.inf):  # the searches' luck alone is too wide: only more searches would do
        return math.inf, math.inf
    if narrow(math.inf, 1.0):
        return float(_smallest(lambda s: narrow(s, 1.0), seeds, integer=True)), 1.0
    if narrow(seeds, math.inf):
        return float(seeds), _smallest(lambda k: narrow(seeds, k), 1.0, integer=False)
    k = 2 * _smallest(lambda k: narrow(math.inf, k), 1.0, integer=False)
    return float(_smallest(lambda s: narrow(s, k), seeds, integer=True)), k


def satterthwaite_pair(v1: float, v2: float, df1: float, df2: float) -> float:
    """Welch-Satterthwaite df of v1 + v2 (as harness.stats.grid_model.satterthwaite, for two scalars)."""
    den = (v1 ** 2 / df1 if v1 > 0 else 0.0) + (v2 ** 2 / df2 if v2 > 0 else 0.0)
    return (v1 + v2) ** 2 / den if den > 0 else math.inf


def _smallest(ok, lo: float, integer: bool, limit: float = 1e7) -> float:
    """Smallest x >= lo with ok(x), ok monotone (false then true); inf when none up to `limit`."""
    hi = max(lo, 1.0) * 2
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > limit:
            return math.inf
    for _ in range(60):  # bisection
        if (hi - lo <= 1) if integer else (hi - lo <= 1e-3 * hi):
            break
        mid = (lo + hi) // 2 if integer else (lo + hi) / 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return math.ceil(hi) if integer else hi


def test_range(var_test: np.ndarray, se_estimate: np.ndarray, df_test: float, level: float = 0.90,
               df_estimate: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """A `level` range for a test-set variance estimate: the wider of its chi-square range over the test
    set's df_test groups and estimate +- t * se_estimate (se_estimate: a jackknife over the runs, whose few
    pairs make the estimate noisy, with df_estimate: the jackknife's replicates - 1), cut at 0."""
    v = np.asarray(var_test, dtype=float)
    tail = (1 - level) / 2
    z = stats.t.isf(tail, df_estimate)
    lo_chi, hi_chi = v * df_test / stats.chi2.isf(tail, df_test), v * df_test / stats.chi2.ppf(tail, df_test)
    se = np.nan_to_num(np.asarray(se_estimate, dtype=float))
    return np.maximum(np.minimum(lo_chi, v - z * se), 0.0), np.maximum(hi_chi, v + z * se)


def plan_text(seeds: float, multiple: float, now: float, low: tuple[float, float] | None = None,
              high: tuple[float, float] | None = None) -> str:
    """What would decide a comparison whatever its effect (an interval with half-width < delta/2), with the
    range the uncertain test part gives: ``low`` and ``high`` are ``plan``'s (seeds, multiple) at the test
    variance's lower and upper bounds (``test_range``). "No number of seeds" is said only where it holds
    at the lower bound too."""
    if math.isnan(seeds):
        return "seed variance unknown: run at least 2 seeds per cell"
    if math.isinf(seeds) and math.isinf(multiple):
        return "the searches' luck alone is too wide to decide it: more searches per cell would, not more seeds"
    low, high = low or (seeds, multiple), high or (seeds, multiple)
    if multiple <= 1:
        if high[1] > 1:
            spread = f" (from {low[0]:.0f}; none would if the test part is as large as its 90% upper bound)"
        elif (low[0], high[0]) != (seeds, seeds):
            spread = f" ({low[0]:.0f} to {high[0]:.0f} over the test part's 90% range)"
        else:
            spread = ""
        return f"{seeds:.0f} seeds per cell would decide it whatever the effect{spread}"
    larger = f"a test set {multiple:.1f}× larger (in groups; up to {high[1]:.1f}× over the test part's 90% range)" \
             f"{f' and {seeds:.0f} seeds per cell' if seeds > now else ''} would"
    if low[1] <= 1 and math.isfinite(low[0]):
        return (f"to decide it whatever the effect, seeds alone would not do at the estimated test part, but would if "
                f"it is as small as its 90% lower bound ({low[0]:.0f} seeds per cell); {larger}")
    return f"to decide it whatever the effect, no number of seeds would do with this test set, even at the test " \
           f"part's 90% lower bound; {larger}"


def power(effect: float, seed_var: float, seeds: float, test_var: float, crit: float,
          df: float = math.inf) -> float:
    """Probability that a contrast with true `effect` is called better or worse.

    seed_var: the contrast's seed variance with one seed per cell (its seed part is
    seed_var / seeds); test_var: its test-set variance; crit: the critical value the verdict
    uses (the family's). t = estimate / se is noncentral t(df, effect / se).
    """
    se = math.sqrt(max(seed_var / seeds + test_var, 0.0))
    if se == 0:
        return float(effect != 0)
    nc = effect / se
    if math.isinf(df):
        return float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_for_power(effect: float, seed_var: float, test_var: float, crit: float, target: float = 0.8,
                    df: float = math.inf, limit: int = 10_000) -> int | None:
    """Fewest seeds per cell reaching `target` power; None when the test part alone forbids it."""
    if power(effect, seed_var, math.inf, test_var, crit, df) < target:
        return None
    lo, hi = 1, 2
    while power(effect, seed_var, hi, test_var, crit, df) < target:
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:  # power rises with seeds: bisect
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if power(effect, seed_var, mid, test_var, crit, df) < target else (lo, mid)
    return hi
