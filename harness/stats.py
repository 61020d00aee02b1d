"""Statistics for the report: small pure functions on arrays, each citing its formula.

Everything scipy already does is delegated to scipy (t and Wilcoxon tests, the
binomial test behind exact McNemar, Wilson intervals, the noncentral t behind
power). Written by hand, because scipy has no function for them: Holm's
step-down correction, Cohen's d_z, the expected maximum over trials of Dodge et
al. (2019) with its variance, and the seeds-needed search. The Almost Stochastic Order test comes
from deepsig when it is installed.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
ASO_MIN_SEEDS = 5  # fewer scores per side make the bootstrap of the violation ratio meaningless
ASO_THRESHOLD = 0.2  # eps_min below this: "almost stochastically dominant" (deepsig's recommended tau)
ASO_ITERATIONS = 200  # bootstrap iterations; 1000 is deepsig's default, ~1.4 s a call on one CPU core


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sd, lo, hi): sample sd (ddof=1) and Student-t interval mean ± t_{n-1} sd / sqrt(n).

    A single value has no spread: sd and the interval are NaN.
    """
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sd / math.sqrt(len(x))) if sd > 0 \
        else (mean, mean)
    return mean, sd, float(lo), float(hi)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson (1927) score interval for a proportion, e.g. the accuracy of one run on n test examples."""
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def proportion_se(p: float, n: int) -> float:
    """Binomial standard error sqrt(p (1 - p) / n) of an accuracy measured on n examples."""
    return math.sqrt(p * (1 - p) / n) if n else math.nan


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Binary ROC-AUC as the Mann-Whitney U of the positives over n_pos * n_neg (Hanley & McNeil 1982)."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    return float(stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def paired_t(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test of b against a (scipy.stats.ttest_rel); NaN below 2 pairs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2:
        return math.nan, math.nan
    d = b - a
    if np.all(d == d[0]):  # no spread: t is infinite (or 0/0); scipy warns and returns NaN
        return (math.nan, 1.0) if d[0] == 0 else (math.copysign(math.inf, d[0]), 0.0)
    result = stats.ttest_rel(b, a)
    return float(result.statistic), float(result.pvalue)


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p of b against a (scipy); 1.0 when every difference is 0."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if len(d) == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided exact Wilcoxon p with n non-zero pairs: all signs alike, 2 / 2^n."""
    return min(1.0, 2.0 / 2 ** n)


def cohens_dz(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d_z for paired samples: mean(b - a) / sd(b - a) (Cohen 1988; Lakens 2013, eq. 6)."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if len(d) < 2:
        return math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean())
    return float(d.mean() / sd)


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


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, float]:
    """(n01, n10, p): exact McNemar test on two models' per-example correctness (McNemar 1947).

    n01 = a wrong and b right, n10 = a right and b wrong; under H0 n01 ~ Binomial(n01 + n10, 1/2),
    so p is the two-sided binomial test (scipy.stats.binomtest). No discordant pairs: p = 1.
    """
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    n01, n10 = int(np.sum(~a & b)), int(np.sum(a & ~b))
    if n01 + n10 == 0:
        return n01, n10, 1.0
    return n01, n10, float(stats.binomtest(n01, n01 + n10, 0.5).pvalue)


def bits(correct: str) -> np.ndarray:
    """A stored '0'/'1' correctness string as a boolean array."""
    return np.frombuffer(correct.encode("ascii"), dtype=np.uint8) == ord("1")


def paired_t_power(dz: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs at effect d_z.

    Under H1, t ~ noncentral t(df = n - 1, nc = d_z sqrt(n)) (Cohen 1988, ch. 2; as G*Power computes it).
    """
    if n < 2 or not math.isfinite(dz):
        return math.nan
    df, nc = n - 1, abs(dz) * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(dz: float, alpha: float = ALPHA, power: float = POWER, limit: int = 10_000) -> int | None:
    """Smallest number of paired seeds whose paired t-test reaches `power` at effect d_z; None if > limit."""
    if math.isinf(dz):
        return 2  # differences without spread: any two seeds show it
    if math.isnan(dz) or dz == 0:
        return None
    for n in range(2, limit + 1):
        if paired_t_power(dz, n, alpha) >= power:
            return n
    return None


def _max_weights(count: int, n: int) -> np.ndarray:
    """P(max of n draws with replacement = the i-th smallest of `count` values) = (i/N)^n - ((i-1)/N)^n."""
    i = np.arange(1, count + 1)
    return (i / count) ** n - ((i - 1) / count) ** n


def expected_max(values: Sequence[float], n: int) -> float:
    """Expected best of n trials drawn with replacement from the observed ones (Dodge et al. 2019, eq. 1).

    With v_(1) <= ... <= v_(N) sorted, P(max = v_(i)) = (i/N)^n - ((i-1)/N)^n.
    """
    return expected_best(values, n)["expected"]


def expected_best(values: Sequence[float], n: int, higher_is_better: bool = True) -> dict:
    """Expected best of n trials and its standard deviation (Dodge et al. 2019, "Show your work").

    The n trials are drawn with replacement from the N observed trial values; with the order-statistic
    weights w_i of ``_max_weights``, E[max] = sum w_i v_(i) and Var[max] = sum w_i v_(i)^2 - E[max]^2
    (Dodge et al. report the expectation with this variance as a band). For a loss (lower is better)
    the best is the minimum, computed as the maximum of -v. NaN for no values.
    """
    sign = 1.0 if higher_is_better else -1.0
    v = np.sort(sign * np.asarray(values, dtype=float))
    if len(v) == 0:
        return {"expected": math.nan, "sd": math.nan}
    w = _max_weights(len(v), n)
    mean = float(np.sum(w * v))
    var = max(0.0, float(np.sum(w * v ** 2)) - mean ** 2)  # rounding can leave -1e-17 when all weight is on one value
    return {"expected": sign * mean, "sd": math.sqrt(var)}


def expected_best_curve(values: Sequence[float], higher_is_better: bool = True) -> list[dict]:
    """For k = 1..N: the expected best of k trials and its sd, beside the best single trial observed.

    ``best_trial`` is the best value actually reached (not an expectation); ``expected`` at k = N is
    the expectation over N draws with replacement and lies below it whenever the values differ.
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return []
    best = float(v.max() if higher_is_better else v.min())
    return [{"trials": k, **expected_best(v, k, higher_is_better), "best_trial": best} for k in range(1, len(v) + 1)]


def aso_available() -> bool:
    try:
        import deepsig  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means the same: no ASO in this report
        return False
    return True


def aso_eps(better: Sequence[float], worse: Sequence[float], num_comparisons: int = 1, seed: int = 0,
            iterations: int = ASO_ITERATIONS) -> float:
    """eps_min of Almost Stochastic Order (Dror et al. 2019) that `better` dominates `worse` (deepsig).

    Below ASO_THRESHOLD: `better` is almost stochastically larger; 0.5 means no order. The confidence
    level is Bonferroni-corrected for `num_comparisons` inside deepsig. NaN when deepsig is missing.
    """
    try:
        from deepsig import aso
    except Exception:  # noqa: BLE001
        return math.nan
    return float(aso(list(map(float, better)), list(map(float, worse)), num_comparisons=num_comparisons,
                     num_bootstrap_iterations=iterations, num_jobs=1, show_progress=False, seed=seed))


def pooled_sd(sds: Sequence[float], ns: Sequence[int]) -> float:
    """Pooled standard deviation sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) over groups with n_i >= 2."""
    pairs = [(s, n) for s, n in zip(sds, ns) if n >= 2 and math.isfinite(s)]
    dof = sum(n - 1 for _, n in pairs)
    return math.sqrt(sum((n - 1) * s ** 2 for s, n in pairs) / dof) if dof else math.nan


def compare_pair(a: Sequence[float], b: Sequence[float], a_correct: np.ndarray | None = None,
                 b_correct: np.ndarray | None = None, alpha: float = ALPHA) -> dict:
    """Every test of b against a, the scores paired by position (the same evaluation seed).

    Two or more pairs: paired t (the primary test), Wilcoxon where n can reach `alpha`, d_z and the
    power at the observed d_z. One pair: exact McNemar on the two models' test predictions.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    diff, _, lo, hi = mean_ci(b - a)
    row = {"n": n, "mean_a": float(a.mean()) if n else math.nan, "mean_b": float(b.mean()) if n else math.nan,
           "diff": diff, "diff_lo": lo, "diff_hi": hi, "test": "none", "p": math.nan, "wilcoxon_p": math.nan,
           "dz": math.nan, "power": math.nan}
    if n >= 2:
        row |= {"test": "paired t", "p": paired_t(a, b)[1], "dz": cohens_dz(a, b)}
        # identical results on every seed: no spread, so any difference would have been seen
        row["power"] = 1.0 if np.all(b - a == 0) else paired_t_power(row["dz"], n, alpha)
        if wilcoxon_min_p(n) <= alpha:
            row["wilcoxon_p"] = wilcoxon_p(a, b)
    elif n == 1 and a_correct is not None and b_correct is not None:
        row |= {"test": "McNemar", "p": mcnemar_exact(a_correct, b_correct)[2]}
    return row


def verdict(row: dict, alpha: float = ALPHA, power: float = POWER) -> str:
    """A plain reading of one comparison from its Holm-corrected p ('p_holm'), for the second level."""
    n, diff, p = row["n"], row["diff"], row.get("p_holm", math.nan)
    if n == 0:
        return "not compared: no seed finished in both cells"
    if math.isnan(p):
        return f"too few seeds ({n}): no test"
    single = " (single models)" if row["test"] == "McNemar" else ""
    if p < alpha:
        return ("better" if diff > 0 else "worse") + single
    if n >= 2 and not row["power"] >= power:
        return f"too few seeds ({n}) for power"
    return "no detectable difference" + single
