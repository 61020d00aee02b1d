"""Where the next wave of evaluation seeds goes, and when an adaptive study stops.

Each undecided comparison gets a target variance (decided at the alpha left with an 80% chance
if the effect is as estimated, or whatever the effect: half-width delta / 2, whichever is
larger); one that its test part alone keeps above target pulls no seeds. Seeds go one at a time
to the cell whose run removes the most excess variance per second of training, within the wave's
limit, max_evaluate and the budget. Details: docs/methods.md, "Adaptive seeds".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from harness.stats.sequential import Key, Look, decided, room, running
from harness.stats.verdicts import sidak

POWER_Z = float(stats.norm.isf(0.2))  # plan for an 80% chance to decide, should the effect be as estimated


@dataclass(frozen=True)
class Demand:
    """The undecided comparisons that seeds can decide, as the allocation sees them."""

    share: np.ndarray  # (K, C) seed variance each cell's runs carry now
    w2: np.ndarray  # (K, C) squared contrast weights
    var_test: np.ndarray  # (K,)
    df_seed: np.ndarray  # (K,) the seed part's df now
    gap: np.ndarray  # (K,) how far the interval must reach: max(|estimate|, delta - |estimate|)
    level: np.ndarray  # (K,) per-comparison level of the next look, at most (Sidak at alpha_rest over its family)
    kept: np.ndarray  # (C,) runs per cell the shares were measured with
    test_df: float
    delta: float
    undecidable: int  # undecided comparisons that no number of seeds would decide


def demand(last: Look, verdicts: dict[str, dict[Key, dict]], alpha_rest: float, delta: float) -> Demand:
    """The undecided comparisons of the last look that seeds can decide (`excess` with unlimited runs
    is 0: the test part alone is small enough). verdicts: `running` over the looks so far."""
    rows, undecidable = [], 0
    for name, f in last.families.items():
        level = sidak(alpha_rest, len(f.keys))
        for i, key in enumerate(f.keys):
            if decided(verdicts[name][key]["verdict"]):
                continue
            gap = max(abs(f.estimate[i]), delta - abs(f.estimate[i]))
            if np.isfinite(f.var_seed[i]) and f.var_test[i] <= _most(gap, delta, level, last.comp.test_df):
                rows.append((f.share[i], f.W[i] ** 2, f.var_test[i], f.df_seed[i], gap, level))
            else:
                undecidable += 1
    C = len(last.comp.runs)
    cols = list(zip(*rows)) if rows else [[] for _ in range(6)]
    share, w2 = (np.array(x, dtype=float).reshape(-1, C) for x in cols[:2])
    var_test, df_seed, gap, level = (np.array(x, dtype=float) for x in cols[2:])
    return Demand(share, w2, var_test, df_seed, gap, level, last.comp.n_runs.astype(float), last.comp.test_df,
                  delta, undecidable)


def _most(gap, delta: float, level, df):
    """The largest variance at which a look at `level` with `df` decides: with an 80% chance if the effect is
    as estimated, (crit + z_0.8) se <= gap; or whatever the effect, crit se <= delta / 2 (estimate_verdicts.plan)."""
    crit = -special.stdtrit(df, np.asarray(level) / 2) if np.all(np.asarray(level) > 0) else np.inf
    return np.maximum(np.asarray(gap) / (crit + POWER_Z), delta / 2 / crit) ** 2


def excess(d: Demand, kept: np.ndarray) -> np.ndarray:
    """(..., K) each comparison's projected variance with `kept` (..., C) runs per cell over `_most`,
    relative to it (0: met).

    The seed part shrinks as 1 / runs per cell; its df grow with the contrast's runs per cell
    (w^2-weighted harmonic mean, as estimate_grid reports it) as in estimate_verdicts.plan.
    """
    inv = 1.0 / np.maximum(kept, 1)  # (..., C)
    var_seed = inv @ (d.share * d.kept).T  # (..., K)
    then, now = d.w2.sum(axis=1) / (inv @ d.w2.T), d.w2.sum(axis=1) / (d.w2 @ (1.0 / np.maximum(d.kept, 1)))
    df_seed = d.df_seed * np.maximum(then - 1, 1e-9) / np.maximum(now - 1, 1e-9)
    total = var_seed + d.var_test
    with np.errstate(divide="ignore", invalid="ignore"):  # Welch-Satterthwaite of the two parts
        df = total ** 2 / (var_seed ** 2 / df_seed + d.var_test ** 2 / d.test_df)
    return np.maximum(total / _most(d.gap, d.delta, d.level, df) - 1, 0.0)


def allocate(d: Demand, runs: np.ndarray, cap: np.ndarray, cost: np.ndarray, pool: np.ndarray,
             left: np.ndarray) -> np.ndarray:
    """(C,) new seeds per cell: greedy by relative excess variance removed per second (module docstring).

    runs: seeds used per cell (the cap counts them); left: seconds of budget left per pool (inf: no limit).
    """
    add, left, step = np.zeros(len(runs), dtype=int), np.asarray(left, dtype=float).copy(), wave_limit(runs, cap)
    useful, one = (d.w2 > 0).any(axis=0), np.eye(len(runs), dtype=int)
    while len(d.gap):
        now = excess(d, d.kept + add).sum()
        if now <= 0:
            break
        gain = now - excess(d, d.kept + add + one).sum(axis=1)  # (C,): one more run in each cell
        open_ = room(runs + add, cap, cost, pool, left) & (add < step) & useful & (gain > 1e-12)
        if not open_.any():
            break
        c = int(np.argmax(np.where(open_, gain / cost, -np.inf)))  # ties: the first cell in grid order
        add[c] += 1
        left[pool[c]] -= cost[c]
    return add


def wave_limit(runs: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """(C,) most seeds a wave adds to a cell: it at most doubles them, and goes to the cap when less
    than two such waves would be left. Few looks, far apart: with Bonferroni over looks, a look
    near the end (9 of 10 seeds, say) would take alpha from the final one for little gain."""
    return np.where(cap - runs < 2 * runs, cap - runs, runs)


def closing(d: Demand, runs: np.ndarray, cap: np.ndarray, cost: np.ndarray, pool: np.ndarray,
            left: np.ndarray) -> np.ndarray:
    """(C,) one seed for each cell the comparisons use, cheapest first within the budget.

    For comparisons whose runs already meet their targets at the alpha left, but whose last
    look (at its smaller alpha) could not decide them: the final look that spends the rest
    must see data that was not seen when its alpha was fixed.
    """
    add, left = np.zeros(len(runs), dtype=int), np.asarray(left, dtype=float).copy()
    for c in np.argsort(cost, kind="stable"):
        if (d.w2[:, c] > 0).any() and room(runs, cap, cost, pool, left)[c]:
            add[c] = 1
            left[pool[c]] -= cost[c]
    return add


@dataclass(frozen=True)
class Wave:
    add: np.ndarray  # (C,) new seeds per cell; all 0 when the study stops
    final: bool  # its look spends all alpha left: no wave follows it
    reason: str
    decided: int  # comparisons decided so far (every family)
    undecided: int
    undecidable: int  # of the undecided: no number of seeds would decide them


def next_wave(looks: list[Look], delta: float, alpha_rest: float, runs: np.ndarray, cap: np.ndarray,
              cost: np.ndarray, pool: np.ndarray, left: np.ndarray) -> Wave:
    """What the next wave adds, and why; or why the study stops.

    The wave is final (its look spends all alpha_rest) when no comparison still over its target
    after it could gain from a later wave (every target met, or their cells full). The flag is
    set here, before the wave's data exist, so the alpha its look spends is fixed in advance.
    """
    rows = running(looks, delta)
    verdicts = [r["verdict"] for family in rows.values() for r in family.values()]
    n_decided = sum(map(decided, verdicts))
    counts = [n_decided, len(verdicts) - n_decided, 0]
    none = np.zeros(len(runs), dtype=int)
    if not verdicts:
        return Wave(none, True, "no comparison could be estimated (too few kept runs)", *counts)
    if not counts[1]:
        return Wave(none, True, "every comparison is decided", *counts)
    if not room(runs, cap, cost, pool, left).any():
        return Wave(none, True, "every cell is at max_evaluate" if np.all(runs >= cap) else "the budget is spent",
                    *counts)
    if alpha_rest <= 1e-12:
        return Wave(none, True, "the last look was final: it spent all alpha left", *counts)
    d = demand(looks[-1], rows, alpha_rest, delta)
    counts[2] = d.undecidable
    if not len(d.gap):
        return Wave(none, True, f"the {counts[1]} undecided comparisons need a larger test set, not more seeds",
                    *counts)
    add = allocate(d, runs, cap, cost, pool, left)
    why = f"{len(d.gap)} undecided comparisons that seeds can decide" + (
        f" ({d.undecidable} more need a larger test set)" if d.undecidable else "")
    if not add.any():  # what seeds can still reach meets its target: the final look needs fresh data only
        add, why = closing(d, runs, cap, cost, pool, left), why + ": the runs they have suffice at the alpha " \
            "left; one more seed per cell they use gives the final look new data"
    if not add.any():
        wanted = (d.w2 > 0).any(axis=0)
        return Wave(none, True, "every cell the undecided comparisons use is at max_evaluate"
                    if np.all(runs[wanted] >= cap[wanted]) else "the budget is spent", *counts)
    unmet = (d.w2[excess(d, d.kept + add) > 0] > 0).any(axis=0)  # cells of comparisons still over target
    final = not room(runs + add, cap, cost, pool, left - np.bincount(pool, add * cost, len(left)))[unmet].any()
    return Wave(add, final, why + ("; the last wave" if final else ""), *counts)
