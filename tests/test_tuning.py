"""Tuning: the space-filling start-up points of a small Optuna budget."""

import math

import numpy as np
import optuna
import pytest

from harness.run import tuning
from harness.study import SearchSpec, TrainSpec


@pytest.mark.parametrize("trials, batch_sizes", [(2, (16, 32)), (4, (16, 32)), (8, (8, 16, 32, 64))])
def test_start_up_points_cover_every_range(trials, batch_sizes):
    """A Latin hypercube: each start-up point in its own n-th of the log-lr range and of the batch sizes."""
    search = SearchSpec(trials=trials, lr=(1e-5, 1e-2), batch_size=batch_sizes)
    n = tuning.startup(search)
    points = [tuning.start_point(search, 0, d, "n=50|ep=4|freeze=all") for d in range(n)]
    assert tuning.start_point(search, 0, n, "n=50|ep=4|freeze=all") is None  # then TPE
    strata = sorted(int((math.log(p["lr"]) - math.log(1e-5)) / (math.log(1e-2) - math.log(1e-5)) * n) for p in points)
    assert strata == list(range(n))
    used = {p["batch_size"] for p in points}
    assert len(used) == min(n, len(batch_sizes))


def test_cells_start_from_different_points_and_each_cell_always_the_same():
    search = SearchSpec(trials=4)
    a = [tuning.start_point(search, 0, d, "cell a") for d in range(2)]
    b = [tuning.start_point(search, 0, d, "cell b") for d in range(2)]
    assert a != b and a == [tuning.start_point(search, 0, d, "cell a") for d in range(2)]
    assert tuning.start_point(SearchSpec(trials=4, sampler="random"), 0, 0, "cell a") is None


def test_ask_runs_the_start_up_points_then_the_sampler():
    search = SearchSpec(trials=4, lr=(1e-5, 1e-2), batch_size=(16, 32))
    study = tuning.open_study(None, "c", search, TrainSpec(), 3, seed=0)
    asked = []
    for _ in range(4):
        trial = tuning.ask(study, search, 0, "c")
        params = tuning.suggest(trial, search)
        asked.append(params)
        study.tell(trial.number, -abs(np.log10(params["lr"]) + 3))
    assert asked[:2] == [tuning.start_point(search, 0, d, "c") for d in range(2)]
    assert all(1e-5 <= p["lr"] <= 1e-2 for p in asked)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 4
