"""Accuracy by score band: how a model does on test examples whose rating is clear or near neutral.

For data whose labels are cut from a score (the raters' mean), the examples near the cut are
where labels are least certain. Everything here takes per-example correctness, (runs, N) or (N,),
the examples' scores and their groups (the review a sentence comes from): sentences of one
review are not independent, so intervals are clustered by group.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from harness.stats import grid_model as estimate
from harness.stats import verdicts

LEVEL = 0.95
# the three-class study's cut, |score| <= 0.5 roughly: (-0.5, 0.5] is near neutral, the rest clear
NEUTRAL_EDGES = (-0.5, 0.5)
NEUTRAL_NAMES = ("clear", "near-neutral", "clear")


def band_of(scores, edges=NEUTRAL_EDGES, names=NEUTRAL_NAMES) -> np.ndarray:
    """Each score's band name: band k holds the scores with k edges strictly below them, the rule
    harness.data.encode_labels cuts a score column by. Names may repeat to merge bands."""
    if len(names) != len(edges) + 1:
        raise ValueError(f"{len(edges)} band edges need {len(edges) + 1} names, got {len(names)}")
    return np.asarray(names, dtype=object)[np.searchsorted(np.asarray(edges), np.asarray(scores, float), side="left")]


def tied(scores, thresholds) -> np.ndarray:
    """(N,) whether each score lies exactly on one of the thresholds (its class then rests on the tie
    rule, harness.data.thresholds; exact float ==, as there: a mean of integer ratings lands on 0 exactly)."""
    return np.isin(np.asarray(scores, dtype=float), np.asarray(thresholds, dtype=float))


def cluster_variance(influence, groups) -> tuple[float, int]:
    """(CR1 variance of a linear statistic sum_i w_i y_i, number of groups), from its per-example
    influence w_i (y_i - its mean): G/(G-1) sum_g (sum_{i in g} influence_i)^2 (Liang & Zeger 1986).

    For a mean, influence_i = (y_i - ybar) / N; this is statsmodels' OLS on a constant with
    cov_type="cluster". NaN variance with fewer than 2 groups.
    """
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(g.max()) + 1 if len(g) else 0
    if n_groups < 2:
        return math.nan, n_groups
    return float(n_groups / (n_groups - 1) * np.sum(np.bincount(g, np.asarray(influence, dtype=float)) ** 2)), n_groups


def clustered_accuracy(correct, groups, level: float = LEVEL) -> dict:
    """Accuracy over examples (each example's correctness averaged over runs) with a clustered interval.

    Standard error: the cluster-robust (CR1) variance of a mean, G/(G-1) sum_g (sum_{i in g}
    (y_i - ybar))^2 / N^2 (Liang & Zeger 1986, Biometrika 73; Cameron & Miller 2015, J. Hum.
    Resour. 50(2)), as statsmodels' OLS with cov_type="cluster" gives it. Interval: Wilson's (1927)
    score interval on the effective sample size n_eff = p(1 - p) / se^2 (Kish 1965's design effect)
    with z replaced by t_{G-1}: the two adjustments Korn & Graubard (1998, Survey Methodology 24(2))
    make to the Clopper-Pearson interval for clustered samples, here on Wilson's, which stays inside
    [0, 1]. It covers the sampling of test groups with the runs held fixed; `deff` is the variance
    over that of as many independent examples.
    """
    y = np.atleast_2d(np.asarray(correct, dtype=float)).mean(axis=0)
    n = len(y)
    var, n_groups = cluster_variance((y - y.mean()) / n if n else y, groups)
    out = {"n": n, "groups": n_groups, "accuracy": float(y.mean()) if n else math.nan, "se": math.nan,
           "lo": math.nan, "hi": math.nan, "deff": math.nan}
    if n_groups < 2:
        return out
    p = out["accuracy"]
    se = math.sqrt(var)
    n_eff = p * (1 - p) / se ** 2 if se > 0 and 0 < p < 1 else float(n)
    # Wilson at z = t_{G-1, (1+level)/2}: the normal level whose quantile that t is
    alpha = 2 * stats.norm.sf(stats.t.ppf(0.5 + level / 2, n_groups - 1))
    lo, hi = proportion_confint(p * n_eff, n_eff, alpha=alpha, method="wilson")
    iid = y.var(ddof=1) / n if n > 1 else math.nan
    return out | {"se": se, "lo": float(lo), "hi": float(hi), "deff": se ** 2 / iid if iid > 0 else math.nan}


def by_band(correct, scores, groups, edges=NEUTRAL_EDGES, names=NEUTRAL_NAMES, level: float = LEVEL) -> pd.DataFrame:
    """One row per band (in the order names first appear): n, groups, accuracy, se, lo, hi, deff."""
    band = band_of(scores, edges, names)
    correct = np.atleast_2d(np.asarray(correct, dtype=float))
    groups = np.asarray(groups)
    rows = [{"band": b} | clustered_accuracy(correct[:, band == b], groups[band == b], level)
            for b in dict.fromkeys(names)]
    return pd.DataFrame(rows)


def compare_labellings(scores, groups, tasks: dict, labels: dict | None = None, edges=NEUTRAL_EDGES,
                       names=NEUTRAL_NAMES, level: float = LEVEL) -> pd.DataFrame:
    """Accuracy per band for several labellings of the same test examples, e.g. binary and three-class.

    `tasks` maps a task's name to its runs' correctness on these examples ((runs, N) or (N,));
    `labels`, if given, to its true labels, for `majority`: the share of the band's commonest class,
    the accuracy of always guessing it (chance differs between tasks: compare each with its own).
    """
    frames = []
    for task, correct in tasks.items():
        frame = by_band(correct, scores, groups, edges, names, level).assign(task=task)
        if labels is not None and task in labels:
            band = band_of(scores, edges, names)
            truth = pd.Series(np.asarray(labels[task]))
            frame["majority"] = [truth[band == b].value_counts(normalize=True).max() if (band == b).any()
                                 else math.nan for b in frame["band"]]
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    return table[["task", *[c for c in table.columns if c != "task"]]]


def band_gap(correct, near, groups, level: float = LEVEL) -> dict:
    """Accuracy on the near-neutral examples minus that on the clear ones, the same runs on both.

    Variance: the seed part, var over runs of each run's gap / runs, plus the test part, the CR1
    variance of the gap of the run-averaged correctness clustered by group (near-neutral and
    clear sentences of one review move together); Welch-Satterthwaite df; an atanh interval,
    inside [-1, 1]. Empty when either band has no example. Conservative: a run's luck on single
    sentences is counted in both parts (a 95% interval covered 0.985 of 400 simulated studies,
    tests/test_bands.py).
    """
    correct = np.atleast_2d(np.asarray(correct, dtype=float))
    near = np.asarray(near, dtype=bool)
    if near.all() or not near.any():
        return {}
    per_run = correct[:, near].mean(axis=1) - correct[:, ~near].mean(axis=1)
    y = correct.mean(axis=0)
    influence = np.where(near, (y - y[near].mean()) / near.sum(), -(y - y[~near].mean()) / (~near).sum())
    var_test, n_groups = cluster_variance(influence, groups)
    var_seed = per_run.var(ddof=1) / len(per_run) if len(per_run) > 1 else 0.0
    d = float(per_run.mean())
    df = estimate.satterthwaite(np.array([var_seed, var_test]), np.array([max(len(per_run) - 1, 1), n_groups - 1]))
    lo, hi = verdicts.atanh_interval(np.array([d]), np.array([math.sqrt(var_seed + var_test)]),
                               verdicts.critical(1 - level, np.array([df])))
    return {"gap": d, "lo": float(lo[0]), "hi": float(hi[0]), "near": int(near.sum()), "clear": int((~near).sum()),
            "var_test": var_test, "var_seed": var_seed, "df": float(df),
            "verdict": verdicts.verdict(float(lo[0]), float(hi[0]), 0.0).split(",")[0]}
