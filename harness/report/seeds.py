"""Section 8 (adaptive studies): the waves of evaluation seeds, and the verdicts they support.

A study whose seeds allow more than their first wave (``max_evaluate``) looked at its results
after each wave; the error rates hold only when each look spends its share of alpha
(harness.stats.sequential). So for such a study the accuracy verdicts of the answers and the detail
come from the looks, not from one analysis of all seeds at the full alpha.
"""

from __future__ import annotations

import dataclasses

from harness import waves
from harness.report.effects import MetricEstimates
from harness.report.format import effect, md_table, num
from harness.report.frames import Stored

KEY = ["axis", "level_a", "level_b", "context"]


def compute(stored: Stored) -> waves.Summary | None:
    return waves.summary_of(stored.results, stored.study)


def apply(m: MetricEstimates, summary: waves.Summary | None) -> MetricEstimates:
    """The accuracy estimates of an adaptive study, every shown number from the looks.

    Each comparison keeps the interval intersected over the looks and the verdict it gave; the
    full-alpha figures of one analysis of all seeds (own interval, p, critical value) would not hold
    after several looks, so they are left blank, and comparisons the looks never made are left out.
    """
    if summary is None or m.grid is None:
        return m
    grid = m.grid
    for family in ("answers", "detail"):
        table, looks = getattr(grid, family), summary.verdicts.get(family)
        if table.empty:
            continue
        if looks is None or looks.empty:
            grid = dataclasses.replace(grid, **{family: table.iloc[:0]})
            continue
        looked = looks.assign(**{k: looks[k].astype(str) for k in KEY}).set_index(KEY)
        keys = list(zip(*(table[k].astype(str) for k in KEY)))
        seen = [k in looked.index for k in keys]
        table = table[seen].copy()
        rows = looked.loc[[k for k, ok in zip(keys, seen) if ok]]
        for mine, theirs in (("estimate", "estimate"), ("lo_sim", "lo"), ("hi_sim", "hi")):
            table[mine] = rows[theirs].to_numpy(dtype=float)
        table["verdict"] = rows["verdict"].to_numpy()
        table[["lo", "hi", "p", "crit", "p_family"]] = float("nan")
        grid = dataclasses.replace(grid, **{family: table})
    return dataclasses.replace(m, grid=grid, note=m.note + "; verdicts from the sequential looks (alpha spent per wave)")


def render(stored: Stored, summary: waves.Summary | None) -> list[str]:
    if summary is None:
        return []
    lines = ["## 8. Seeds where the answer needed them", "",
             "The study added evaluation seeds in waves, to the cells whose runs most narrowed the undecided "
             "comparisons per training second. Each look at the results spends part of the error rate "
             "(O'Brien–Fleming-type spending, Lan & DeMets 1983), and each comparison keeps the intersection of its "
             "intervals over the looks, so the verdicts above hold at the study's α in spite of looking several "
             "times.", ""]
    rows = [[str(r.wave), str(r.runs), num(r.seconds, ".0f"), num(r.alpha, ".4f"), str(len(r.decided)),
             str(r.undecided), r.reason] for r in summary.waves.itertuples()]
    lines += md_table(["wave", "runs", "training s", "α spent at its look", "decided at its look",
                       "undecided after", "why"], rows)
    if summary.stop:
        lines += [f"No further wave: {summary.stop}.", ""]
    if not summary.undecided.empty:
        rows = [[r.family, r.comparison, effect(r.estimate, r.lo, r.hi),
                 f"{num(r.seeds_per_cell, '.0f')} seeds per cell ({num(r.more_runs, '.0f')} more runs, "
                 f"{num(r.seconds / 60, '.0f')} min)" if r.by_seeds else f"a test set {num(r.test_multiple, '.1f')}× larger"]
                for r in summary.undecided.itertuples()]
        lines += ["Still undecided, and what would decide it:", ""] + \
            md_table(["family", "comparison", "Δ [interval over the looks]", "would decide it"], rows)
    return lines
