"""Is binary too coarse? Two labellings of the same score compared on the same test sentences.

On *clear* sentences (outside the neutral band) both labellings ask the same question: the
difference of accuracies, with both sides' seed variance and the review-clustered test variance,
Welch-Satterthwaite df and an atanh interval. On *near-neutral* ones the binary model's accuracy
and the three-class model's neutral recall stand side by side, each beside the band's commonest
class. Details and sources: docs/methods.md, "Binary against three classes".
"""

from __future__ import annotations

import math

import numpy as np

from harness.stats import verdicts
from harness.stats.bands import NEUTRAL_EDGES, NEUTRAL_NAMES, band_of, cluster_variance, compare_labellings
from harness.stats.grid_model import satterthwaite

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
                "verdict": verdicts.verdict(math.nan, math.nan, delta)}
    var = sum(parts)
    df = float(satterthwaite(np.array(parts), np.array(dfs, dtype=float)))
    lo, hi = verdicts.atanh_interval(np.array([d]), np.array([math.sqrt(var)]), verdicts.critical(1 - level, np.array([df])))
    lo, hi = float(lo[0]), float(hi[0])
    return {"difference": d, "se": math.sqrt(var), "df": df, "lo": lo, "hi": hi, "groups": n_groups,
            "var_test": var_test, "var_seed": var - var_test, "seed_parts": len(parts) - 1,
            "verdict": verdicts.verdict(lo, hi, delta)}


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
