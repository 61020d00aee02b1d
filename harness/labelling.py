"""Is binary too coarse? Two labellings of the same score compared on the same test sentences.

A binary study (score > 0 positive) and a three-class one (a neutral band around 0) of the
same sentences, split alike (``data.split_thresholds``), are compared where they ask the same
question and where they do not:

- *clear* sentences (outside the neutral band): both labellings say negative or positive, so
  the accuracies are directly comparable; the difference tells what adding a neutral class
  costs or gains on them (a three-class model that answers "neutral" there is wrong);
- *near-neutral* sentences: the binary label rests on a near-zero mean rating; the binary
  model's accuracy there and the three-class model's (which is its recall of "neutral") stand
  side by side, each with the accuracy of always answering the band's commonest class.

The difference of two sets of runs on the same examples has two sources of variance: the runs
(seeds) of each side, and the sampling of test sentences, which are clustered by review. Both
are estimated and added (Bouthillier et al. 2021, MLSys, for the decomposition; the test part
is the cluster-robust CR1 variance of a mean, Cameron & Miller 2015), with Welch-Satterthwaite
degrees of freedom and an interval made on the atanh scale so that it stays inside [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np

from harness import estimate_verdicts as ev
from harness.bands import NEUTRAL_EDGES, NEUTRAL_NAMES, band_of, cluster_variance, compare_labellings
from harness.estimate import satterthwaite

LEVEL = 0.95


def difference(a, b, groups, level: float = LEVEL, delta: float = 0.01) -> dict:
    """Mean accuracy of runs ``a`` (Ra, N) minus runs ``b`` (Rb, N) on the same N examples.

    Variance: var(a's run means)/Ra + var(b's run means)/Rb (the seeds) plus the CR1 variance of
    the mean of d_i = mean_a(i) - mean_b(i) clustered by ``groups`` (the test sentences); a side
    with one run contributes no seed part (its seed variance is unknown, the interval too narrow:
    ``seed_parts`` says how many sides had more than one). Degrees of freedom: Welch-Satterthwaite over
    Ra - 1, Rb - 1 and G - 1.
    """
    a, b = (np.atleast_2d(np.asarray(x, dtype=float)) for x in (a, b))
    d_i = a.mean(axis=0) - b.mean(axis=0)
    d = float(d_i.mean())
    var_test, n_groups = cluster_variance((d_i - d) / len(d_i), groups)
    parts, dfs = [var_test], [n_groups - 1]
    for runs in (a, b):
        if len(runs) > 1:
            parts.append(float(runs.mean(axis=1).var(ddof=1) / len(runs)))
            dfs.append(len(runs) - 1)
    if not math.isfinite(var_test):
        return {"difference": d, "se": math.nan, "df": math.nan, "lo": math.nan, "hi": math.nan, "groups": n_groups,
                "var_test": math.nan, "var_seed": math.nan, "seed_parts": len(parts) - 1,
                "verdict": ev.verdict(math.nan, math.nan, delta)}
    var = sum(parts)
    df = float(satterthwaite(np.array(parts), np.array(dfs, dtype=float)))
    lo, hi = ev.atanh_interval(np.array([d]), np.array([math.sqrt(var)]), ev.critical(1 - level, np.array([df])))
    lo, hi = float(lo[0]), float(hi[0])
    return {"difference": d, "se": math.sqrt(var), "df": df, "lo": lo, "hi": hi, "groups": n_groups,
            "var_test": var_test, "var_seed": var - var_test, "seed_parts": len(parts) - 1,
            "verdict": ev.verdict(lo, hi, delta)}


def compare(binary_correct, three_correct, three_pred, scores, groups, binary_labels, three_labels,
            neutral: int = 1, edges=NEUTRAL_EDGES, level: float = LEVEL, delta: float = 0.01) -> dict:
    """Binary against three-class runs on the same test sentences, by band of the score.

    ``*_correct``: (runs, N) 0/1 per sentence; ``three_pred``: (runs, N) predicted classes of the
    three-class runs; ``*_labels``: (N,) true classes; ``neutral``: the neutral class's index.
    Returns ``clear`` (the difference binary minus three-class, :func:`difference`, with both
    accuracies and the share of clear sentences the three-class runs call neutral) and ``near``
    (each side's clustered accuracy and the band's majority share under each labelling).
    """
    names = NEUTRAL_NAMES[:len(edges) + 1]
    band = band_of(scores, edges, names)
    groups = np.asarray(groups)
    binary_correct, three_correct, three_pred = (np.atleast_2d(np.asarray(x, dtype=float))
                                                 for x in (binary_correct, three_correct, three_pred))
    table = compare_labellings(scores, groups, {"binary": binary_correct, "three": three_correct},
                               {"binary": binary_labels, "three": three_labels}, edges, names, level)
    row = lambda task, b: table[(table["task"] == task) & (table["band"] == b)].iloc[0].to_dict()  # noqa: E731
    clear, near = band == "clear", band == "near-neutral"
    out = {"n": len(band), "runs": (len(binary_correct), len(three_correct))}
    if clear.sum() and len(np.unique(groups[clear])) >= 2:
        out["clear"] = difference(binary_correct[:, clear], three_correct[:, clear], groups[clear], level, delta) | {
            "n": int(clear.sum()), "binary": row("binary", "clear"), "three": row("three", "clear"),
            "called_neutral": float((three_pred[:, clear] == neutral).mean())}
    if near.sum() and len(np.unique(groups[near])) >= 2:
        binary, three = row("binary", "near-neutral"), row("three", "near-neutral")
        out["near"] = {"n": int(near.sum()), "binary": binary, "three": three,
                       "binary_majority": binary["majority"], "three_majority": three["majority"]}
    return out
