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

from harness.stats.sequential import Key, Look, decided, running
from harness.stats.verdicts import sidak

POWER_Z = float(stats.norm.isf(0.2))  # plan for an 80% chance to decide, should the effect be as estimated


@dataclass(frozen=True)
class Demand:
    """The undecided comparisons that seeds or searches can decide, as the allocation sees them."""

    share: np.ndarray  # (K, C) seed variance each cell's runs carry now
    search: np.ndarray  # (K, C) search variance each cell's searches carry now (0: one search, not counted)
    w2: np.ndarray  # (K, C) squared contrast weights
    var_test: np.ndarray  # (K,)
    df_seed: np.ndarray  # (K,) the seed part's df now
    gap: np.ndarray  # (K,) how far the interval must reach: max(|estimate|, delta - |estimate|)
    level: np.ndarray  # (K,) per-comparison level of the next look, at most (Sidak at alpha_rest over its family)
    kept: np.ndarray  # (C,) runs per cell the shares were measured with
    searches: np.ndarray  # (C,) searches per cell the search shares were measured with
    test_df: float
    delta: float
    undecidable: int  # undecided comparisons that no number of seeds or searches would decide


def demand(last: Look, verdicts: dict[str, dict[Key, dict]], alpha_rest: float, delta: float) -> Demand:
    """The undecided comparisons of the last look that seeds or searches can decide (`excess` with
    unlimited runs and searches is 0: the test part alone is small enough). verdicts: `running` over
    the looks so far."""
    rows, undecidable = [], 0
    for name, f in last.families.items():
        level = sidak(alpha_rest, len(f.keys))
        for i, key in enumerate(f.keys):
            if decided(verdicts[name][key]["verdict"]):
                continue
            gap = max(abs(f.estimate[i]), delta - abs(f.estimate[i]))
            if np.isfinite(f.var_seed[i]) and f.var_test[i] <= _most(gap, delta, level, last.comp.test_df):
                rows.append((f.share[i], f.search[i], f.W[i] ** 2, f.var_test[i], f.df_seed[i], gap, level))
            else:
                undecidable += 1
    C = len(last.comp.runs)
    cols = list(zip(*rows)) if rows else [[] for _ in range(7)]
    share, search, w2 = (np.array(x, dtype=float).reshape(-1, C) for x in cols[:3])
    var_test, df_seed, gap, level = (np.array(x, dtype=float) for x in cols[3:])
    return Demand(share, search, w2, var_test, df_seed, gap, level, last.comp.n_runs.astype(float),
                  np.maximum(last.comp.replicates, 1).astype(float), last.comp.test_df, delta, undecidable)


def _most(gap, delta: float, level, df):
    """The largest variance at which a look at `level` with `df` decides: with an 80% chance if the effect is
    as estimated, (crit + z_0.8) se <= gap; or whatever the effect, crit se <= delta / 2 (verdicts.plan)."""
    crit = -special.stdtrit(df, np.asarray(level) / 2) if np.all(np.asarray(level) > 0) else np.inf
    return np.maximum(np.asarray(gap) / (crit + POWER_Z), delta / 2 / crit) ** 2


def excess(d: Demand, kept: np.ndarray, searches: np.ndarray | None = None) -> np.ndarray:
    """(..., K) each comparison's projected variance with `kept` (..., C) runs and `searches` (..., C)
    searches per cell over `_most`, relative to it (0: met).

    The seed part shrinks as 1 / runs per cell, the search part as 1 / searches; the seed part's df grow
    with the contrast's runs per cell (w^2-weighted harmonic mean, as the contrasts report it) as in
    verdicts.plan, the search part's with the searches (searches - 1 each).
    """
    searches = d.searches if searches is None else searches
    inv = 1.0 / np.maximum(kept, 1)  # (..., C)
    var_seed = inv @ (d.share * d.kept).T  # (..., K)
    var_search = (1.0 / np.maximum(searches, 1)) @ (d.search * d.searches).T
    then, now = d.w2.sum(axis=1) / (inv @ d.w2.T), d.w2.sum(axis=1) / (d.w2 @ (1.0 / np.maximum(d.kept, 1)))
    df_seed = d.df_seed * np.maximum(then - 1, 1e-9) / np.maximum(now - 1, 1e-9)
    df_search = np.maximum(searches - 1, 1e-9) @ d.search.T / np.maximum((d.search > 0).sum(axis=1), 1)
    total = var_seed + var_search + d.var_test
    with np.errstate(divide="ignore", invalid="ignore"):  # Welch-Satterthwaite of the three parts
        df = total ** 2 / (var_seed ** 2 / df_seed + d.var_test ** 2 / d.test_df
                           + np.where(var_search > 0, var_search ** 2 / df_search, 0.0))
    return np.maximum(total / _most(d.gap, d.delta, d.level, df) - 1, 0.0)


@dataclass(frozen=True)
class Options:
    """What a wave may add to each cell, and what it costs (the cost model's seconds: machine-independent)."""

    seeds: np.ndarray  # (C,) seeds per search now
    searches: np.ndarray  # (C,) searches now
    seed_cap: np.ndarray  # (C,) max_evaluate
    search_cap: np.ndarray  # (C,) search.max_replicates
    run_cost: np.ndarray  # (C,) one evaluation run
    search_cost: np.ndarray  # (C,) one more search: its tuning trials and one run per seed
    pool: np.ndarray  # (C,) the budget each cell draws on
    left: np.ndarray  # (P,) budget left per pool (inf: no limit)

    @classmethod
    def seeds_only(cls, seeds, cap, cost, pool, left) -> "Options":
        """One search per cell, never more: only seeds to add."""
        one = np.ones(len(seeds), dtype=int)
        return cls(np.asarray(seeds), one, np.asarray(cap), one, np.asarray(cost, dtype=float),
                   np.zeros(len(seeds)), np.asarray(pool), np.asarray(left, dtype=float))

    def seed_room(self, seeds: np.ndarray, searches: np.ndarray, left: np.ndarray) -> np.ndarray:
        """(C,) cells that may take one more seed (a run for each of their searches)."""
        return (seeds < self.seed_cap) & (self.run_cost * searches <= left[self.pool])

    def search_room(self, seeds: np.ndarray, searches: np.ndarray, left: np.ndarray) -> np.ndarray:
        """(C,) cells that may take one more search: at least two already (so that its luck is counted)."""
        cost = self.search_cost + self.run_cost * (seeds - self.seeds)
        return (searches >= 2) & (searches < self.search_cap) & (cost <= left[self.pool])

    def room(self) -> np.ndarray:
        return self.seed_room(self.seeds, self.searches, self.left) | self.search_room(self.seeds, self.searches,
                                                                                       self.left)


def allocate(d: Demand, o: Options) -> tuple[np.ndarray, np.ndarray]:
    """((C,) new seeds, (C,) new searches per cell): greedy by relative excess variance removed per second.

    A new seed runs on every search of its cell; a new search is tuned, then run on every seed of its cell.
    """
    C = len(o.seeds)
    seeds, searches, left = o.seeds.copy(), o.searches.copy(), np.asarray(o.left, dtype=float).copy()
    step, search_step = wave_limit(o.seeds, o.seed_cap), wave_limit(o.searches, o.search_cap)
    useful, one = (d.w2 > 0).any(axis=0), np.eye(C, dtype=int)
    ratio = d.kept / np.maximum(o.seeds * o.searches, 1)  # runs kept per run trained (collapses)

    def kept(s, r):
        return ratio * s * r

    while len(d.gap):
        now = excess(d, kept(seeds, searches), searches).sum()
        if now <= 0:
            break
        gain_seed = now - excess(d, kept(seeds + one, searches), searches).sum(axis=1)  # (C,)
        gain_search = now - excess(d, kept(seeds, searches + one), searches + one).sum(axis=1)
        cost_seed = o.run_cost * searches
        cost_search = o.search_cost + o.run_cost * (seeds - o.seeds)
        open_seed = o.seed_room(seeds, searches, left) & (seeds - o.seeds < step) & useful & (gain_seed > 1e-12)
        open_search = o.search_room(seeds, searches, left) & (searches - o.searches < search_step) & useful \
            & (gain_search > 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):  # closed options may cost nothing
            value = np.concatenate([np.where(open_seed, gain_seed / cost_seed, -np.inf),
                                    np.where(open_search, gain_search / cost_search, -np.inf)])
        if not np.isfinite(value).any():
            break
        k = int(np.argmax(value))  # ties: seeds before searches, then the first cell in grid order
        c = k % C
        if k < C:
            seeds[c] += 1
            left[o.pool[c]] -= cost_seed[c]
        else:
            searches[c] += 1
            left[o.pool[c]] -= cost_search[c]
    return seeds - o.seeds, searches - o.searches


def wave_limit(runs: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """(C,) most seeds a wave adds to a cell: it at most doubles them, and goes to the cap when less
    than two such waves would be left. Few looks, far apart: with Bonferroni over looks, a look
    near the end (9 of 10 seeds, say) would take alpha from the final one for little gain."""
    return np.where(cap - runs < 2 * runs, cap - runs, runs)


def closing(d: Demand, o: Options) -> np.ndarray:
    """(C,) one seed for each cell the comparisons use, cheapest first within the budget.

    For comparisons whose runs already meet their targets at the alpha left, but whose last
    look (at its smaller alpha) could not decide them: the final look that spends the rest
    must see data that was not seen when its alpha was fixed.
    """
    add, left = np.zeros(len(o.seeds), dtype=int), np.asarray(o.left, dtype=float).copy()
    for c in np.argsort(o.run_cost * o.searches, kind="stable"):
        if (d.w2[:, c] > 0).any() and o.seed_room(o.seeds, o.searches, left)[c]:
            add[c] = 1
            left[o.pool[c]] -= o.run_cost[c] * o.searches[c]
    return add


@dataclass(frozen=True)
class Wave:
    add: np.ndarray  # (C,) new seeds per cell (each runs on every search of the cell); all 0 when the study stops
    final: bool  # its look spends all alpha left: no wave follows it
    reason: str
    decided: int  # comparisons decided so far (every family)
    undecided: int
    undecidable: int  # of the undecided: no number of seeds or searches would decide them
    searches: np.ndarray | None = None  # (C,) new searches per cell (each tuned, then run on every seed)


def next_wave(looks: list[Look], delta: float, alpha_rest: float, o: Options) -> Wave:
    """What the next wave adds, and why; or why the study stops.

    The wave is final (its look spends all alpha_rest) when no comparison still over its target
    after it could gain from a later wave (every target met, or their cells full). The flag is
    set here, before the wave's data exist, so the alpha its look spends is fixed in advance.
    """
    rows = running(looks, delta)
    verdicts = [r["verdict"] for family in rows.values() for r in family.values()]
    n_decided = sum(map(decided, verdicts))
    counts = [n_decided, len(verdicts) - n_decided, 0]
    none = np.zeros(len(o.seeds), dtype=int)
    if not verdicts:
        return Wave(none, True, "no comparison could be estimated (too few kept runs)", *counts)
    if not counts[1]:
        return Wave(none, True, "every comparison is decided", *counts)
    if not o.room().any():
        full = np.all(o.seeds >= o.seed_cap) and np.all((o.searches < 2) | (o.searches >= o.search_cap))
        return Wave(none, True, "every cell is at max_evaluate" if full else "the budget is spent", *counts)
    if alpha_rest <= 1e-12:
        return Wave(none, True, "the last look was final: it spent all alpha left", *counts)
    d = demand(looks[-1], rows, alpha_rest, delta)
    counts[2] = d.undecidable
    if not len(d.gap):
        return Wave(none, True, f"the {counts[1]} undecided comparisons need a larger test set, not more seeds",
                    *counts)
    add, more = allocate(d, o)
    why = f"{len(d.gap)} undecided comparisons that seeds can decide" + (
        f" ({d.undecidable} more need a larger test set)" if d.undecidable else "")
    if not add.any() and not more.any():  # what seeds can still reach meets its target: the final look needs
        add, why = closing(d, o), why + ": the runs they have suffice at the alpha " \
            "left; one more seed per cell they use gives the final look new data"  # fresh data only
    if not add.any() and not more.any():
        wanted = (d.w2 > 0).any(axis=0)
        return Wave(none, True, "every cell the undecided comparisons use is at max_evaluate"
                    if np.all(o.seeds[wanted] >= o.seed_cap[wanted]) else "the budget is spent", *counts)
    if more.any():
        why += f"; {int(more.sum())} more search(es) where the searches' luck dominates"
    ratio = d.kept / np.maximum(o.seeds * o.searches, 1)
    after = excess(d, ratio * (o.seeds + add) * (o.searches + more), o.searches + more)
    unmet = (d.w2[after > 0] > 0).any(axis=0)  # cells of comparisons still over target
    spent = o.run_cost * add * (o.searches + more) + (o.search_cost + o.run_cost * add) * more
    later = Options(o.seeds + add, o.searches + more, o.seed_cap, o.search_cap, o.run_cost, o.search_cost, o.pool,
                    o.left - np.bincount(o.pool, spent, len(o.left)))
    final = not later.room()[unmet].any()
    return Wave(add, final, why + ("; the last wave" if final else ""), *counts, searches=more)
