"""The plan of a run: what is left to train, counted from the study and the store, and its estimate."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.records import RunRecord
from harness.run import plan
from harness.study import expand, load_study

SMOKE = Path(__file__).parents[1] / "studies/smoke.toml"
DATA = SimpleNamespace(train_pool=np.arange(1000), val=np.arange(100), test=np.arange(200))


def record(cell: str, role: str, seed: int, trial: int | None = None) -> RunRecord:
    return RunRecord(study="smoke", cell=cell, axes={}, role=role, seed=seed, params={}, device="cpu", trial=trial)


def smoke_plan(records: list[RunRecord], overrides: list[str] = ()) -> plan.Plan:
    cells = expand(load_study(SMOKE, list(overrides)))
    return plan.plan(cells, {c.id: 6 if c.freeze == "all" else 5 for c in cells}, DATA, records)


def test_the_plan_counts_what_the_store_lacks():
    full = smoke_plan([])
    assert (len(full.cells), full.done, full.trainings, full.wave_runs) == (4, 0, 4 * (2 + 2), 0)
    first = "n=64|ep=3|freeze=all"
    stored = [record(first, "tune", 0, 0), record(first, "tune", 0, 1), record(first, "eval", 1),
              record(first, "eval", 2), record("n=128|ep=3|freeze=all", "eval", 2)]
    p = smoke_plan(stored)
    assert p.done == 1 and p.trainings == 16 - 4 - 1
    assert p.prefix == {("builtin:all-MiniLM-L6-v2", 48)}


def test_added_waves_are_counted_apart_within_their_budget():
    p = smoke_plan([], ["seeds.max_evaluate=5", "seeds.budget_minutes=2"])
    assert p.wave_runs == 4 * 3 and p.wave_budget_s == 120


def test_the_estimate_is_runs_times_their_epochs_plus_the_prefix_pass():
    """Each run at most: load + epochs x (train rows x train s + validation rows x predict s), plus the test
    rows for an evaluation run; the prefix pass: texts x its per-text time."""
    p = smoke_plan([], ["seeds.max_evaluate=3"])
    speed = plan.Speed(load=1.0, train=0.01, predict=0.001, prefix=0.05)
    speeds = {c.kind: speed for c in p.cells}
    est = plan.estimate(p, speeds, texts=1000)
    tune_64 = 1.0 + 3 * (64 * 0.01 + 100 * 0.001)
    eval_64 = tune_64 + 200 * 0.001
    tune_128, eval_128 = tune_64 + 3 * 64 * 0.01, eval_64 + 3 * 64 * 0.01
    assert est.first == pytest.approx(2 * (2 * tune_64 + 2 * eval_64 + 2 * tune_128 + 2 * eval_128))
    assert est.waves == pytest.approx(2 * (eval_64 + eval_128))
    assert est.prefix == pytest.approx(1000 * 0.05)
    line = plan.describe(p, est, "cpu")
    assert line.startswith("plan: 4 cells (0 done): 8 tuning trainings and 8 evaluation runs, at most")
    assert "up to 4 more runs in added waves" in line and "quick measurement on this machine, cpu" in line
    assert math.isinf(smoke_plan([]).wave_budget_s)


def test_the_dry_run_lines_give_each_cells_time_from_the_same_estimate():
    p = smoke_plan([record("n=64|ep=3|freeze=all", "eval", 1)])
    speed = plan.Speed(load=1.0, train=0.01, predict=0.001, prefix=0.05)
    est = plan.estimate(p, {c.kind: speed for c in p.cells}, texts=1000)
    assert sum(est.cells.values()) == pytest.approx(est.first)
    lines = plan.cell_lines(p, est)
    assert lines[0] == "  n=64|ep=3|freeze=all: 2 tuning trainings, 1 evaluation runs, at most 10 s"
