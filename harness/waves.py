"""Adaptive seeds over the store: replay the looks, plan the next wave, summarise the waves.

Wave 0 is every cell's ``evaluate`` seeds; wave k >= 1 adds the seeds that
``harness.stats.allocation`` chooses after look k - 1. Look k sees the runs of waves 0..k only,
so every look can be replayed from the store and gives what it gave when the study made it.
A plan is a plain dict (manifest.json "waves", or a user attr in shared storage), stored before
its seeds train; its keys are listed at ``plan_next``. Used by both front ends (``harness run``
and ``harness worker``) and by the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import evidence

from harness.stats import allocation, verdicts
from harness.stats import sequential as seq
from harness.evidence import Evidence
from harness.study import Cell, Study, expand
from harness.store import Results


@dataclass(frozen=True)
class Layout:
    """What each cell's seeds and search tables allow."""

    candidates: list[tuple[int, ...]]  # every evaluation seed each cell may run, in order
    cap: np.ndarray  # (C,) max_evaluate: seeds per search
    search_cap: np.ndarray  # (C,) search.max_replicates: searches per cell
    pool: np.ndarray  # (C,) which budget the cell draws on (cells with equal seeds tables share one)
    budget: np.ndarray  # (P,) the cost model's seconds per pool (inf: no limit)


def layout(cells: list[Cell]) -> Layout:
    specs = list(dict.fromkeys(c.study.seeds for c in cells))
    return Layout([c.study.seeds.candidates for c in cells], np.array([c.study.seeds.cap for c in cells]),
                  np.array([c.study.search.replicate_cap for c in cells]),
                  np.array([specs.index(c.study.seeds) for c in cells]),
                  np.array([s.budget_minutes * 60 if s.budget_minutes else math.inf for s in specs]))


def adaptive(cells: list[Cell]) -> bool:
    """Whether waves may add evaluation seeds or searches to some cell."""
    return any(c.study.seeds.adaptive or c.study.search.replicate_cap > c.study.search.replicates for c in cells)


def eval_seeds(cell: Cell, plans: list[dict]) -> list[int]:
    """The evaluation seeds of every search of ``cell`` once ``plans`` have run: the first wave's, then each
    plan's."""
    return [*cell.study.seeds.evaluate, *(s for p in plans for s in p["seeds"].get(cell.id, []))]


def replicates_of(cell: Cell, plans: list[dict]) -> int:
    """The searches ``cell`` has once ``plans`` have run."""
    return cell.study.search.replicates + sum(p.get("replicates", {}).get(cell.id, 0) for p in plans)


def budget_left(ev: Evidence, lay: Layout) -> np.ndarray:
    """(P,) the cost model's seconds each pool's budget has left after the added waves so far."""
    return lay.budget - np.bincount(lay.pool, ev.spent(), minlength=len(lay.budget))


def options(ev: Evidence, cells: list[Cell], lay: Layout, plans: list[dict]) -> allocation.Options:
    """What the next wave may add to each cell after ``plans``, at the cost model's prices."""
    seeds = np.array([len(eval_seeds(c, plans)) for c in cells])
    searches = np.array([replicates_of(c, plans) for c in cells])
    return allocation.Options(seeds, searches, lay.cap, lay.search_cap, ev.cost(), ev.search_cost(), lay.pool,
                              budget_left(ev, lay))


def replay(ev: Evidence, cells: list[Cell], plans: list[dict], alpha: float) -> tuple[list[seq.Look], list[float]]:
    """Looks 0..len(plans) (every plan finished), each at what it spends, and their information fractions.

    Look k's fraction is 1 when the plan of wave k said it was the last, or when no run could follow it.
    """
    lay, looks, ts = layout(cells), [], [0.0]
    for k in range(len(plans) + 1):
        e = ev.upto(k)
        more = options(e, cells, lay, plans[:k]).room().any()
        ts.append(seq.information(e.n_runs, lay.cap * lay.search_cap, more and not (k and plans[k - 1]["final"])))
        looks.append(seq.look(e.Y, e.groups, e.cells.drop(columns="cell"), e.order,
                              seq.spend(ts[-1], alpha) - seq.spend(ts[-2], alpha), replicates=e.replicates,
                              seeds=e.seeds))
    return looks, ts[1:]


def plan_next(ev: Evidence, cells: list[Cell], plans: list[dict], alpha: float, delta: float) -> dict:
    """The plan of wave len(plans) + 1 from every wave so far (all finished): its seeds and searches, or
    why none.

    wave: k; seeds: {cell id: [seeds]} (each run on every search of the cell); replicates: {cell id: n}
    new searches (each tuned, then run on every seed of the cell); stop: true when no wave follows;
    final: look k spends all alpha left; reason: why, or why the study stops; decided, undecided,
    need_test_set: comparisons after look k - 1; look_alpha, look_t: what that look spent and its
    information fraction; alpha, smallest_effect: the study's; planned_seconds: the cost model's
    seconds of the wave (the same on any machine).
    """
    lay = layout(cells)
    looks, ts = replay(ev, cells, plans, alpha)
    o = options(ev, cells, lay, plans)
    wave = allocation.next_wave(looks, delta, alpha - seq.spend(ts[-1], alpha), o)
    more = wave.searches if wave.searches is not None else np.zeros(len(cells), dtype=int)
    taken = [set(eval_seeds(c, plans)) for c in cells]
    seeds = {c.id: [s for s in lay.candidates[i] if s not in taken[i]][:wave.add[i]]
             for i, c in enumerate(cells) if wave.add[i]}
    searches = {c.id: int(more[i]) for i, c in enumerate(cells) if more[i]}
    cost = float(o.run_cost @ (wave.add * (o.searches + more)) + (o.search_cost + o.run_cost * wave.add) @ more)
    return {"wave": len(plans) + 1, "seeds": seeds, "replicates": searches, "stop": not seeds and not searches,
            "final": bool(wave.final), "reason": wave.reason, "decided": wave.decided, "undecided": wave.undecided,
            "need_test_set": wave.undecidable, "look_alpha": looks[-1].alpha, "look_t": ts[-1], "alpha": alpha,
            "smallest_effect": delta, "planned_seconds": round(cost, 1)}


def describe(plan: dict) -> str:
    """One display line: what the wave does and why, or why the study stops."""
    before = (f"{plan['decided']} comparisons decided, {plan['undecided']} undecided after look {plan['wave'] - 1} "
              f"(alpha {plan['look_alpha']:.2g} spent there)")
    if plan["stop"]:
        return f"no wave {plan['wave']}: {plan['reason']}; {before}"
    seeds, searches = sum(map(len, plan["seeds"].values())), sum(plan.get("replicates", {}).values())
    more = f" and {searches} more search(es)" if searches else ""
    cells = len(set(plan["seeds"]) | set(plan.get("replicates", {})))
    return (f"wave {plan['wave']}: {seeds} evaluation seeds{more} for {cells} cells, about "
            f"{plan['planned_seconds']:.0f} s of training on the reference machine, for {plan['reason']}; {before}")


@dataclass(frozen=True)
class Summary:
    waves: pd.DataFrame  # one row per wave (0 = the evaluate seeds): what it added, cost and decided
    undecided: pd.DataFrame  # one row per comparison still undecided: what would decide it and its cost
    stop: str  # why no further wave ran ("" while one may still be planned)
    verdicts: dict[str, pd.DataFrame]  # per family, sequential.combine over the looks: the study's verdicts


def summary_of(results: Results, study: Study | None = None) -> Summary | None:
    """The summary of a results folder's waves; None for a study that adds no seeds (its verdicts are
    estimate_grid.analyse's at alpha). ``study``: the folder's own, unless a report changed its analysis keys."""
    study = study or results.study()
    cells = expand(study)
    if not adaptive(cells):
        return None
    plans = (results.manifest() or {}).get("waves", [])
    return summarise(evidence.from_results(results, study), cells, plans, study.analysis.alpha,
                     study.analysis.smallest_effect)


def summarise(ev: Evidence, cells: list[Cell], plans: list[dict], alpha: float, delta: float) -> Summary:
    """The report's account of the waves: per wave the seeds added per cell, the training seconds,
    the comparisons its look decided; then what stays undecided and what deciding it would cost."""
    finished = [p for p in plans if not p["stop"] and _complete(ev, cells, p)]
    looks, ts = replay(ev, cells, finished, alpha)
    combined = seq.combine(looks, delta)
    rows = [_wave_row(k, ev, cells, looks[k].alpha, combined, finished) for k in range(len(looks))]
    stop = plans[len(finished)]["reason"] if len(plans) > len(finished) and plans[len(finished)]["stop"] else ""
    rest = alpha - seq.spend(ts[-1], alpha)
    return Summary(pd.DataFrame(rows), _undecided(looks, combined, ev, rest, delta), stop, combined)


def _wave_row(k: int, ev: Evidence, cells: list[Cell], alpha: float, combined: dict[str, pd.DataFrame],
              plans: list[dict]) -> dict:
    """wave; seeds: cell id -> seeds the wave ran; runs; seconds (trained); alpha its look spent;
    decided: 'family: comparison: verdict' first decided at its look; undecided after it; reason."""
    runs = ev.runs[ev.runs["wave"] == k]
    seeds = {cells[c].id: sorted({int(s) for s in group}) for c, group in runs.groupby("cell")["seed"]}
    decided = [f"{name}: {_label(r)}: {r.verdict}" for name, t in combined.items() for r in t.itertuples()
               if r.decided_at == k]
    undecided = sum(int(((t["decided_at"] < 0) | (t["decided_at"] > k)).sum()) for t in combined.values())
    return {"wave": k, "seeds": seeds, "runs": len(runs), "seconds": float(runs.loc[runs["trained"], "seconds"].sum()),
            "alpha": alpha, "decided": decided, "undecided": undecided,
            "reason": plans[k - 1]["reason"] if k else "the study's evaluate seeds"}


def _complete(ev: Evidence, cells: list[Cell], plan: dict) -> bool:
    """Whether every seed the plan added has a run, and every search it added has runs of that wave."""
    have = {(cells[c].id, s) for c, s in zip(ev.runs["cell"], ev.runs["seed"])}
    runs = ev.runs.assign(cell_id=[cells[c].id for c in ev.runs["cell"]])
    new = runs[runs["wave"] == plan["wave"]].groupby("cell_id")["replicate"].nunique()
    return all((cell, s) in have for cell, seeds in plan["seeds"].items() for s in seeds) and \
        all(new.get(cell, 0) >= n for cell, n in plan.get("replicates", {}).items())


def _label(row) -> str:
    return f"{row.axis} {row.level_a} -> {row.level_b}" + (f" at {row.context}" if row.context else "")


def _undecided(looks: list[seq.Look], combined: dict[str, pd.DataFrame], ev: Evidence, alpha_rest: float,
               delta: float) -> pd.DataFrame:
    """Each undecided comparison: seeds per cell that would decide it (estimate_verdicts.plan at the alpha not
    yet spent; once all is spent, at what the last look spent), the runs and seconds that would take."""
    cost, rows = ev.cost(), []
    for name, table in combined.items():
        for r in table[~table["verdict"].map(seq.decided)].itertuples():
            f = looks[r.look].families[name]
            comp = looks[r.look].comp  # the runs of the look this comparison stands at
            searches = np.maximum(comp.replicates, 1)
            kept = comp.n_runs / searches  # seeds per search
            w = f.W[r.index]
            level = verdicts.family_level(np.eye(len(f.keys)), alpha_rest if alpha_rest > 1e-9 else looks[-1].alpha)
            now = float((w ** 2).sum() / np.where(w != 0, w ** 2 / np.maximum(kept, 1), 0.0).sum())
            seeds, multiple = verdicts.plan(f.var_seed[r.index], f.var_test[r.index], now, f.df_seed[r.index],
                                            comp.test_df, level, delta, f.var_search[r.index])
            more = np.where(w != 0, np.maximum(seeds - kept, 0) * searches, 0) if math.isfinite(seeds) \
                else np.full(len(w), np.nan)
            rows.append({"family": name, "comparison": _label(r), "estimate": r.estimate, "lo": r.lo, "hi": r.hi,
                         "by_seeds": multiple == 1.0, "seeds_per_cell": seeds, "test_multiple": multiple,
                         "more_runs": float(np.nansum(more)), "seconds": float(np.nansum(more * cost))})
    return pd.DataFrame(rows, columns=["family", "comparison", "estimate", "lo", "hi", "by_seeds", "seeds_per_cell",
                                       "test_multiple", "more_runs", "seconds"])
