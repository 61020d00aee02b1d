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
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n, n_groups = len(y), int(g.max()) + 1 if len(g) else 0
    out = {"n": n, "groups": n_groups, "accuracy": float(y.mean()) if n else math.nan, "se": math.nan,
           "lo": math.nan, "hi": math.nan, "deff": math.nan}
    if n_groups < 2:
        return out
    p = out["accuracy"]
    se = math.sqrt(n_groups / (n_groups - 1) * np.sum(np.bincount(g, y - p) ** 2)) / n
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
