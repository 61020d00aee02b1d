"""Is a validation-accuracy peak before the last epoch a real drop? A test that pays for choosing the peak.

``split_drop_test``: split the validation reviews in two seeded halves; choose the peak epoch on
one half; test "peak better than last" on the other with an exact sign-flip permutation test over
review totals (Cox 1975 for the split; Fisher 1935 and Gail et al. 1996 for the test). Holm
across a study's runs (``decide_across_runs``). The price: half the validation set, so a larger
smallest detectable drop (``smallest_real_change``). Why this test, and its simulated size:
docs/methods.md, "Late peaks".
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from harness.stats.verdicts import ALPHA, holm

SPLIT_SEED = 0  # fixed, so that the split is not one more thing that could be chosen after seeing results


def as_groups(groups: Sequence | None, n: int) -> np.ndarray:
    """Group codes 0..G-1 for n examples; no groups given: every example is its own group."""
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} validation examples")
    return np.unique(groups, return_inverse=True)[1]


def group_halves(groups: np.ndarray, seed: int = SPLIT_SEED) -> np.ndarray:
    """(N,) bool: True for the examples of half A (choose), False for half B (test).

    Groups are shuffled with ``seed`` and taken into A until A holds half the examples, so whole
    groups fall on one side and the halves are about equal in examples, not only in groups.
    """
    codes = np.unique(groups, return_inverse=True)[1]
    sizes = np.bincount(codes)
    order = np.random.default_rng(seed).permutation(len(sizes))
    in_a = np.zeros(len(sizes), dtype=bool)
    in_a[order[np.cumsum(sizes[order]) <= len(codes) / 2]] = True
    if not in_a.any():  # one group holds more than half the examples: it alone is half A
        in_a[order[0]] = True
    return in_a[codes]


def sign_flip_p(group_diffs: Sequence[int]) -> float:
    """Exact one-sided p of sum(D_g) >= observed when each integer D_g's sign is a fair coin.

    sum_g s_g |D_g| = 2 W - sum |D_g| with W the total of a random subset of the |D_g|, so
    P(sum >= observed) = P(W >= observed positive total); W's distribution is the product
    prod_g (1 + x^|D_g|) / 2, built by convolution. Written by hand: scipy.stats.permutation_test
    samples (or enumerates 2^G sign vectors); the convolution is exact in O(G sum|D_g|).
    """
    d = np.asarray(group_diffs, dtype=np.int64)
    d = d[d != 0]
    if len(d) == 0:
        return 1.0
    sizes = np.abs(d)
    dist = np.zeros(int(sizes.sum()) + 1)
    dist[0] = 1.0
    reach = 0
    for s in sizes:
        dist[s:reach + s + 1] = 0.5 * dist[s:reach + s + 1] + 0.5 * dist[:reach + 1].copy()
        dist[:s] *= 0.5
        reach += s
    observed = int(d[d > 0].sum())
    return float(min(1.0, dist[observed:].sum()))


def split_drop_test(correct: np.ndarray, groups: Sequence | None = None, seed: int = SPLIT_SEED) -> dict:
    """Peak-before-last against last, the peak chosen on half A and tested on half B.

    ``correct``: (E, N) per-epoch, per-example correctness on the validation set, epochs in order.
    Returns the chosen epoch's position (0-based), the drop on each half (accuracy), the number
    of groups and examples in half B, and ``p``: the exact one-sided sign-flip p over half B's
    groups. p = 1 when half A shows no drop to test (not testing never makes a false alarm);
    NaN with fewer than two epochs.
    """
    c = np.asarray(correct, dtype=bool)
    codes = as_groups(groups, c.shape[1])
    a = group_halves(codes, seed)
    out = {"chosen": None, "drop_a": math.nan, "drop_b": math.nan, "groups_b": int(len(np.unique(codes[~a]))),
           "n_b": int((~a).sum()), "p": math.nan}
    if c.shape[0] < 2:
        return out
    acc_a = c[:, a].mean(axis=1)
    chosen = int(np.argmax(acc_a[:-1]))  # first of equals, as the training loop's best epoch
    delta = c[chosen, ~a].astype(np.int64) - c[-1, ~a]  # +1: right at the peak, wrong at the last epoch
    out |= {"chosen": chosen, "drop_a": float(acc_a[chosen] - acc_a[-1]),
            "drop_b": float(delta.mean()) if len(delta) else math.nan}
    if acc_a[chosen] <= acc_a[-1]:
        return out | {"p": 1.0}
    return out | {"p": sign_flip_p(np.bincount(codes[~a], weights=delta).astype(np.int64))}


def decide_across_runs(pvalues: Sequence[float], alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """(Holm-adjusted p, real drop?) per run; NaN p (nothing to test) stays NaN, never 'real'."""
    adjusted = holm(pvalues)
    return adjusted, [bool(p < alpha) for p in adjusted]


def min_p(net_change: int, n_groups: int | None = None, two_sided: bool = True) -> float:
    """The smallest exact p any outcome with this net change of examples can reach.

    Best case for the test: every discordant example moves the same way, and in as many groups
    as possible, each group one fair coin: p = 2^-min(net, groups), doubled when two-sided. The
    lab's 0.88 -> 0.89 on 200 independent reviews is a net change of 2: p >= 0.5.
    """
    net = abs(int(net_change))
    if net == 0:
        return 1.0
    flips = net if n_groups is None else min(net, int(n_groups))
    return min(1.0, (2.0 if two_sided else 1.0) * 0.5 ** flips)


def smallest_real_change(n: int, n_groups: int | None = None, alpha: float = ALPHA,
                         two_sided: bool = True) -> dict:
    """The smallest net change (examples, and as accuracy) that could ever be called real at ``alpha``.

    For ``split_drop_test`` pass half B's examples and groups, one-sided, and for a family of m runs
    Holm's first step alpha / m. ``net`` is None when no outcome of this set reaches ``alpha``.
    """
    for net in range(1, n + 1):
        p = min_p(net, n_groups, two_sided)
        if p <= alpha:
            return {"net": net, "accuracy": net / n, "min_p": p}
        if n_groups is not None and net >= n_groups:
            break  # more examples cannot add coins once every group moves
    return {"net": None, "accuracy": math.nan, "min_p": min_p(n, n_groups, two_sided)}


def peak_and_min_loss(history: Sequence[dict]) -> dict:
    """Epoch of the validation-accuracy peak and of the validation-loss minimum (first of equals)."""
    rows = [h for h in history if "val_accuracy" in h]
    if not rows:
        return {"acc_peak_epoch": None, "loss_min_epoch": None, "lag": None}
    peak = max(rows, key=lambda h: (h["val_accuracy"], -h["epoch"]))["epoch"]
    low = min(rows, key=lambda h: (h["val_loss"], h["epoch"]))["epoch"]
    return {"acc_peak_epoch": peak, "loss_min_epoch": low, "lag": peak - low}
