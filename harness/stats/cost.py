"""What a run costs, and accuracy against cost: the cost model, the Pareto frontier of the cells and
the cheapest cell within delta of the best.

The cost model prices a run in seconds on a reference machine from its work alone, so that every
choice made from costs (where adaptive seeds go) is the same on any machine; measured seconds are
reported, never used for a choice. The frontier functions take one row per cell, as the report's
summary table has it: a value column, optionally its interval (``*_lo``, ``*_hi``), and cost
columns. Rows with a missing value or cost take no part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

VALUE = "accuracy_mean"
# Seconds per epoch of the reference machine (2-core CPU, torch 2.13, fitted with bench/calibrate_cost.py on
# the default study's 234 evaluation runs): per optimizer step, and per million parameter-positions through
# the trained part for the training rows and for the validation pass.
RATES = {"batches": 0.00136221, "train": 3.246e-05, "val": 2.439e-05}


def run_seconds(epochs: int, batches: float, train: float, val: float) -> float:
    """A run's cost: ``epochs`` epochs of the work one epoch stores (harness.run.execute.work), at RATES."""
    return epochs * (RATES["batches"] * batches + RATES["train"] * train + RATES["val"] * val)


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
