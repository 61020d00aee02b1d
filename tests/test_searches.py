"""Replicated searches: the search component of the grid model, checked on fixed data and by simulation.

A cell that runs several independent hyperparameter searches, each evaluated on the same seeds, shows
how much its result depends on the search's luck. The grid model estimates that component and adds it
to every interval, so that the intervals cover the whole tune-then-train pipeline; with one search per
cell they are conditional on the hyperparameters chosen and miss the truth (averaged over searches)
when searches differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

import sim
from harness.stats import contrasts, grid_model

CELLS = sim.grid_cells()
GRID = contrasts.Grid(CELLS, sim.ORDER, np.ones(len(CELLS), bool))
ANSWERS = np.stack([c.weights for c in GRID.answers()])
EFFECTS = sim.shifts_for(CELLS, {"data_size": {150: 0.3, 500: 0.45}, "freeze": {4: 0.3, 0: 0.36}})
UNEQUAL = np.where(CELLS["freeze"] == 0, 0.25, 0.05)  # full fine-tuning's searches vary most


def test_the_search_component_is_the_anova_estimator_on_a_balanced_cell():
    """One cell, 3 searches x 5 seeds (seed effects shared by the searches): (MS_search - MS_residual) /
    seeds of the two-way ANOVA in statsmodels, and the residual mean square as the seed part."""
    rng = np.random.default_rng(4)
    R, S = 3, 5
    a = 0.7 + rng.normal(0, 0.03, (R, 1)) + rng.normal(0, 0.01, (1, S)) + rng.normal(0, 0.02, (R, S))
    reps, seeds = np.repeat(np.arange(R), S), np.tile(np.arange(S), R)
    comp = grid_model.components(a.reshape(1, -1), np.zeros((1, 1)), 50.0, replicates=reps, seeds=seeds)
    frame = pd.DataFrame({"a": a.ravel(), "search": reps, "seed": seeds})
    table = sm.stats.anova_lm(smf.ols("a ~ C(search) + C(seed)", frame).fit())
    ms_search, ms_resid = table.loc["C(search)", "mean_sq"], table.loc["Residual", "mean_sq"]
    assert comp.search_var[0] == pytest.approx((ms_search - ms_resid) / S, rel=1e-9)
    assert comp.resid_var.mean() == pytest.approx(ms_resid, rel=1e-9) and comp.replicates.tolist() == [3]
    mean = grid_model.cell_means(comp)
    assert mean.var_search[0] == pytest.approx(comp.search_var[0] / R, rel=1e-9)


def test_one_search_per_cell_is_the_model_it_always_was():
    """With one search everywhere, nothing changes: no search part, the same seed and test parts."""
    design = sim.Design(shifts=EFFECTS)
    y = sim.simulate(design, 1, np.random.default_rng(2))[0]
    plain = contrasts.family_arrays(grid_model.accuracy_components(y, design.groups), ANSWERS)
    with_columns = contrasts.family_arrays(grid_model.accuracy_components(
        y, design.groups, replicates=np.zeros(3, int), seeds=np.arange(3)), ANSWERS)
    assert np.array_equal(plain["se"], with_columns["se"]) and np.all(plain["se_search"] == 0)


def coverage(design: sim.Design, n: int, seed: int, one_search: bool = False) -> dict[str, float]:
    """Coverage of the answers' 95% intervals (each, and the family's simultaneous ones) and of the cells'
    95% intervals, of the truth averaged over searches, over n simulated grids."""
    Y, truth, cells = sim.simulate(design, n, np.random.default_rng(seed)), ANSWERS @ design.truth(), design.truth()
    reps, seeds = design.replicates, design.seed_numbers
    keep = reps == 0 if one_search else np.ones(len(reps), bool)
    each, family, cell, share = [], [], [], []
    for y in Y:
        comp = grid_model.accuracy_components(y[:, keep], design.groups, replicates=reps[keep], seeds=seeds[keep])
        f = contrasts.family_arrays(comp, ANSWERS)
        each.append(np.mean((f["lo"] < truth) & (truth < f["hi"])))
        family.append(np.all((f["lo_sim"] < truth) & (truth < f["hi_sim"])))
        t = contrasts.cell_table(comp, GRID, 0.05, len(design.sizes))
        cell.append(np.mean((t["lo"] < cells) & (cells < t["hi"])))
        share.append(np.mean(f["search_share"]))
    return {"each": float(np.mean(each)), "family": float(np.mean(family)), "cells": float(np.mean(cell)),
            "search share": float(np.mean(share))}


@pytest.mark.parametrize("name, design, n", [
    ("2 searches, search sd 0.15", sim.Design(shifts=EFFECTS, searches=2, search_sd=0.15), 300),
    ("3 searches, search sd 0.15", sim.Design(shifts=EFFECTS, searches=3, search_sd=0.15), 200),
    ("2 searches, fine-tuning's searches vary 5x more", sim.Design(shifts=EFFECTS, searches=2, search_sd=UNEQUAL), 400),
])
def test_with_two_searches_or_more_the_intervals_cover_the_pipeline_and_with_one_they_do_not(name, design, n):
    replicated, single = coverage(design, n, seed=21), coverage(design, n, seed=21, one_search=True)
    print(f"\n{name}, {n} grids: with every search: {replicated}; with the first search only: {single}")
    assert 0.93 <= replicated["each"] <= 0.975 and 0.92 <= replicated["family"] <= 0.99
    assert 0.93 <= replicated["cells"] <= 0.985 and replicated["search share"] > 0.3
    assert single["each"] < 0.85 and single["family"] < 0.6  # conditional intervals miss the searches' luck


def test_searches_that_do_not_differ_leave_the_intervals_near_their_rate():
    """No search luck at all: the search part is estimated near 0 and the intervals stay near 95%."""
    design = sim.Design(shifts=EFFECTS, searches=2, search_sd=0.0)
    got = coverage(design, 300, seed=22)
    print(f"\nno search luck, 2 searches, 300 grids: {got}")
    assert 0.94 <= got["each"] <= 0.99 and got["family"] >= 0.93 and got["search share"] < 0.35
