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

from harness.stats import allocation
from harness.stats import verdicts
from harness.stats import sequential as seq
from harness.evidence import Evidence
from harness.study import Cell, Study, expand
from harness.store import Results


@dataclass(frozen=True)
class Layout:
    """What each cell's seeds table allows."""

    candidates: list[tuple[int, ...]]  # every evaluation seed each cell may run, in order
    cap: np.ndarray  # (C,) max_evaluate
    pool: np.ndarray  # (C,) which budget the cell draws on (cells with equal seeds tables share one)
    budget: np.ndarray  # (P,) seconds per pool (inf: no limit)


def layout(cells: list[Cell]) -> Layout:
    specs = list(dict.fromkeys(c.study.seeds for c in cells))
    return Layout([c.study.seeds.candidates for c in cells], np.array([c.study.seeds.cap for c in cells]),
                  np.array([specs.index(c.study.seeds) for c in cells]),
                  np.array([s.budget_minutes * 60 if s.budget_minutes else math.inf for s in specs]))


def adaptive(cells: list[Cell]) -> bool:
    return any(c.study.seeds.adaptive for c in cells)


def budget_left(ev: Evidence, lay: Layout) -> np.ndarray:
    """(P,) seconds each pool's budget has left after the added waves so far."""
    return lay.budget - np.bincount(lay.pool, ev.spent(), minlength=len(lay.budget))


def replay(ev: Evidence, lay: Layout, plans: list[dict], alpha: float) -> tuple[list[seq.Look], list[float]]:
    """Looks 0..len(plans) (every plan finished), each at what it spends, and their information fractions.

    Look k's fraction is 1 when the plan of wave k said it was the last, or when no run could follow it.
    """
    looks, ts = [], [0.0]
    for k in range(len(plans) + 1):
        e = ev.upto(k)
        more = seq.room(e.n_runs, lay.cap, e.cost(), lay.pool, budget_left(e, lay)).any()
        ts.append(seq.information(e.n_runs, lay.cap, more and not (k and plans[k - 1]["final"])))
        looks.append(seq.look(e.Y, e.groups, e.cells.drop(columns="cell"), e.order,
                              seq.spend(ts[-1], alpha) - seq.spend(ts[-2], alpha)))
    return looks, ts[1:]


def plan_next(ev: Evidence, cells: list[Cell], plans: list[dict], alpha: float, delta: float) -> dict:
    """The plan of wave len(plans) + 1 from every wave so far (all finished): its seeds, or why none.

    wave: k; seeds: {cell id: [seeds]}; stop: true when no wave follows (seeds empty); final: look
    k spends all alpha left; reason: why these seeds, or why the study stops; decided, undecided,
    need_test_set: comparisons after look k - 1; look_alpha, look_t: what that look spent and its
    information fraction; alpha, smallest_effect: the study's; planned_seconds: expected training.
    """
    lay = layout(cells)
    looks, ts = replay(ev, lay, plans, alpha)
    taken = [set(c.study.seeds.evaluate) | {s for p in plans for s in p["seeds"].get(c.id, [])} for c in cells]
    cost = ev.cost()
    wave = allocation.next_wave(looks, delta, alpha - seq.spend(ts[-1], alpha), np.array([len(t) for t in taken]),
                                lay.cap, cost, lay.pool, budget_left(ev, lay))
    seeds = {c.id: [s for s in lay.candidates[i] if s not in taken[i]][:wave.add[i]]
             for i, c in enumerate(cells) if wave.add[i]}
    return {"wave": len(plans) + 1, "seeds": seeds, "stop": not seeds, "final": bool(wave.final),
            "reason": wave.reason, "decided": wave.decided, "undecided": wave.undecided,
            "need_test_set": wave.undecidable, "look_alpha": looks[-1].alpha, "look_t": ts[-1], "alpha": alpha,
            "smallest_effect": delta, "planned_seconds": round(float(wave.add @ cost), 1)}


def describe(plan: dict) -> str:
    """One display line: what the wave does and why, or why the study stops."""
    before = (f"{plan['decided']} comparisons decided, {plan['undecided']} undecided after look {plan['wave'] - 1} "
              f"(alpha {plan['look_alpha']:.2g} spent there)")
    if plan["stop"]:
        return f"no wave {plan['wave']}: {plan['reason']}; {before}"
    seeds = sum(map(len, plan["seeds"].values()))
    return (f"wave {plan['wave']}: {seeds} evaluation seeds for {len(plan['seeds'])} cells, about "
            f"{plan['planned_seconds']:.0f} s of training, for {plan['reason']}; {before}")


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
    looks, ts = replay(ev, layout(cells), finished, alpha)
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
    seeds = {cells[c].id: sorted(int(s) for s in group) for c, group in runs.groupby("cell")["seed"]}
    decided = [f"{name}: {_label(r)}: {r.verdict}" for name, t in combined.items() for r in t.itertuples()
               if r.decided_at == k]
    undecided = sum(int(((t["decided_at"] < 0) | (t["decided_at"] > k)).sum()) for t in combined.values())
    return {"wave": k, "seeds": seeds, "runs": len(runs), "seconds": float(runs.loc[runs["trained"], "seconds"].sum()),
            "alpha": alpha, "decided": decided, "undecided": undecided,
            "reason": plans[k - 1]["reason"] if k else "the study's evaluate seeds"}


def _complete(ev: Evidence, cells: list[Cell], plan: dict) -> bool:
    have = {(cells[c].id, s) for c, s in zip(ev.runs["cell"], ev.runs["seed"])}
    return all((cell, s) in have for cell, seeds in plan["seeds"].items() for s in seeds)


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
            kept = looks[r.look].comp.n_runs  # the runs of the look this comparison stands at
            w = f.W[r.index]
            level = verdicts.family_level(np.eye(len(f.keys)), alpha_rest if alpha_rest > 1e-9 else looks[-1].alpha)
            now = float((w ** 2).sum() / np.where(w != 0, w ** 2 / np.maximum(kept, 1), 0.0).sum())
            seeds, multiple = verdicts.plan(f.var_seed[r.index], f.var_test[r.index], now, f.df_seed[r.index],
                                      looks[r.look].comp.test_df, level, delta)
            more = np.where(w != 0, np.maximum(seeds - kept, 0), 0) if math.isfinite(seeds) else np.full(len(w), np.nan)
            rows.append({"family": name, "comparison": _label(r), "estimate": r.estimate, "lo": r.lo, "hi": r.hi,
                         "by_seeds": multiple == 1.0, "seeds_per_cell": seeds, "test_multiple": multiple,
                         "more_runs": float(np.nansum(more)), "seconds": float(np.nansum(more * cost))})
    return pd.DataFrame(rows, columns=["family", "comparison", "estimate", "lo", "hi", "by_seeds", "seeds_per_cell",
                                       "test_multiple", "more_runs", "seconds"])
