"""The harness side of a cell, built from the harness's own parts.

Tokenise once; one eval-mode forward pass through the frozen part over every
distinct row the cell touches (``harness.run.modeling.frozen_prefix``); the Optuna
trials train only the top on the first seed's split; each seed then trains with
the best parameters and is tested once. All of it through the execution core
every study runs on (``harness.run.execute``): seed 0 with the best parameters is the
best trial itself, its test score held back from tuning, not trained again. The clock runs from tokenisation to the last
test prediction, model loading included.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import numpy as np
import optuna
import torch

from bench.cells import N_CLASSES, BenchData, Cell, SideResult, train_spec
from harness.run import modeling
from harness.run import tuning
from harness.run.display import Display
from harness.run.execute import evaluation, fixed_params, load_context, run_trial
from harness.study import GridSpec, ModelSpec, SearchSpec, SeedSpec, Study, expand
from harness.run.modeling import frozen_prefix, load_classifier, tokenize

def search_spec(cell: Cell) -> SearchSpec:
    # no pruning: the peer's Optuna default (MedianPruner, 5 start-up trials) never prunes these budgets
    return SearchSpec(trials=cell.trials, lr=cell.lr, batch_size=cell.batch_sizes, sampler="tpe", pruner="none")


def open_search(cell: Cell) -> optuna.Study:
    """The cell's in-memory Optuna study; the peer is handed a fresh one's sampler and pruner."""
    return tuning.open_study(None, cell.name, search_spec(cell), train_spec(), cell.epochs, seed=0)


def bench_study(cell: Cell, model: str) -> Study:
    """The cell as a one-cell study, so the harness side runs through harness.run.execute like any study."""
    freeze = "all" if cell.trainable_blocks == 0 else 0 if cell.trainable_blocks == "all" else None
    if freeze is None:  # top-k blocks trainable: the depth depends on the model's block count
        freeze = cell.depth(len(modeling.encoder_parts(load_classifier(model, N_CLASSES, 0))[2]))
    return Study(name=f"bench-{cell.name}", model=ModelSpec(name=model, max_length=cell.max_length),
                 grid=(GridSpec(data_sizes=(cell.data_size,), epochs=(cell.epochs,), freeze=(freeze,)),),
                 seeds=SeedSpec(tune=(0,), evaluate=tuple(range(cell.seeds))), search=search_spec(cell),
                 train=train_spec())


def run_ours(cell: Cell, data: BenchData, model: str, device: torch.device) -> SideResult:
    with tempfile.TemporaryDirectory() as cache:
        # a cold tokenisation cache each repetition: the peer tokenises afresh too
        os.environ["HARNESS_CACHE"] = cache
        started = time.perf_counter()
        study = bench_study(cell, model)
        cells = expand(study)
        ctx = dataclasses.replace(load_context(study, cells, data, Display(enabled=False)), device=device)
        search, tuned = open_search(cell), []
        for _ in range(cell.trials):  # the trials tune on seed 0's split, as harness.run.runner.tune_cell does
            trial = search.ask()
            tuned.append(run_trial(ctx, cells[0], trial))
            tuning.settle(search, trial.number, tuned[-1])
        params = tuning.best_params(search, fixed_params(cells[0]))  # as harness.run.runner.tune_cell
        # seed 0 with the best parameters is the best trial: not trained again (harness.run.execute.reusable)
        evals = [evaluation(ctx, cells[0], seed, params, tuned) for seed in range(cell.seeds)]
        return SideResult(time.perf_counter() - started, [r.test["accuracy"] for r in evals], params,
                          [len(r.history) for r in tuned + evals])


def limit_seconds(cell: Cell, data: BenchData, model: str, device: torch.device) -> float:
    """The least work the cell needs: one forward pass of every touched row through the frozen part.

    Timed alone: tokenisation and model loading stay outside the clock.
    """
    rows = data.rows_touched(cell)
    encodings = tokenize(model, [data.texts[i] for i in rows], cell.max_length)
    net = load_classifier(model, N_CLASSES, 0)
    depth = cell.depth(len(modeling.encoder_parts(net)[2]))
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    frozen_prefix(net, encodings, np.arange(len(rows)), [depth], device)
    return time.perf_counter() - started  # frozen_prefix copies to the host: synchronised
