"""Accuracy against cost: the Pareto frontier of the cells and the cheapest cell within delta of the best.

Input is one row per cell, as the report's summary table has it: a value column (mean accuracy
over seeds), optionally its interval (``*_lo``, ``*_hi``), and cost columns (seconds per run,
trainable parameters). Rows with a missing value or cost take no part.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DELTA = 0.01  # smallest difference in accuracy worth paying for
COSTS = ("seconds_per_run", "trainable_params")
VALUE = "accuracy_mean"
TOL = 1e-12  # float slack when comparing a difference against delta


def on_frontier(cells: pd.DataFrame, cost: str, value: str = VALUE) -> pd.Series:
    """True where no other cell is at most as costly and at least as good, and better in one.

    Equal cost and equal value dominate nothing, so tied cells share the frontier. Written by hand:
    a pairwise comparison of a few dozen cells; no installed library exposes a Pareto filter.
    """
    c, v = cells[cost].to_numpy(dtype=float), cells[value].to_numpy(dtype=float)
    ok = ~(np.isnan(c) | np.isnan(v))
    no_worse = (c[None, :] <= c[:, None]) & (v[None, :] >= v[:, None])  # [i, j]: j no worse than i
    better = (c[None, :] < c[:, None]) | (v[None, :] > v[:, None])
    dominated = (no_worse & better & ok[None, :]).any(axis=1)
    return pd.Series(ok & ~dominated, index=cells.index)


def frontier(cells: pd.DataFrame, cost: str, value: str = VALUE) -> pd.DataFrame:
    """The frontier cells, cheapest first: each one buys more `value` than every cheaper one."""
    return cells[on_frontier(cells, cost, value)].sort_values([cost, value], ascending=[True, False])


def cheapest_within(cells: pd.DataFrame, cost: str, value: str = VALUE, delta: float = DELTA,
                    name: str = "label") -> dict:
    """The cheapest cell whose mean is within `delta` of the best mean, against the best cell.

    Ties go to the better cell. `saving` is the best cell's cost over the chosen one's. With the
    value's 95% intervals (columns value.replace('_mean', '_lo' / '_hi')), `by_intervals` says
    whether best_hi - chosen_lo <= delta: the gap is within delta even at the far ends of the two
    intervals. That is conservative (two separate intervals are wider than one interval of a paired
    difference), so False means "not shown", not "worse"; a paired interval of the difference decides.
    """
    usable = cells.dropna(subset=[cost, value])
    if usable.empty:
        return {}
    best = usable.sort_values([value, cost], ascending=[False, True]).iloc[0]
    near = usable[usable[value] >= best[value] - delta - TOL]
    chosen = near.sort_values([cost, value], ascending=[True, False]).iloc[0]
    out = {"best": best[name], "best_value": float(best[value]), "best_cost": float(best[cost]),
           "chosen": chosen[name], "chosen_value": float(chosen[value]), "chosen_cost": float(chosen[cost]),
           "gap": float(best[value] - chosen[value]), "delta": delta,
           "saving": float(best[cost] / chosen[cost]) if chosen[cost] > 0 else math.inf}
    lo, hi = value.replace("_mean", "_lo"), value.replace("_mean", "_hi")
    if lo != value and {lo, hi} <= set(cells.columns) and not math.isnan(best[hi]) and not math.isnan(chosen[lo]):
        out["by_intervals"] = bool(best[hi] - chosen[lo] <= delta + TOL)
    return out


def cost_table(cells: pd.DataFrame, value: str = VALUE, costs=COSTS, name: str = "label") -> pd.DataFrame:
    """Per cell: its value, gap to the best, each cost and whether it is on that cost's frontier."""
    out = cells[[name, value, *costs]].copy()
    out["gap"] = cells[value].max() - cells[value]
    for cost in costs:
        out[f"frontier_{cost}"] = on_frontier(cells, cost, value)
    return out.sort_values(list(costs[:1]) + [value], ascending=[True, False])


def sentence(result: dict, unit: str = "s per run") -> str:
    """One line for the report, e.g. 'n=500 ep=4 freeze=4: 0.806 at 13.6 s per run, within 0.01 of ...'."""
    if not result:
        return "no cell has both a value and a cost"
    if result["chosen"] == result["best"]:
        return (f"{result['best']} is both the best ({result['best_value']:.3f}) and the cheapest within "
                f"{result['delta']:g}")
    shown = {True: "; shown even at the ends of both 95% intervals",
             False: "; the two 95% intervals do not show the gap is within it"}.get(result.get("by_intervals"), "")
    return (f"{result['chosen']}: {result['chosen_value']:.3f} at {result['chosen_cost']:.3g} {unit}, within "
            f"{result['delta']:g} of the best, {result['best']}: {result['best_value']:.3f} at "
            f"{result['best_cost']:.3g} {unit} ({result['saving']:.1f}x the cost){shown}")
