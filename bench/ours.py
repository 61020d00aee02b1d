"""The harness side of a cell, built from the harness's own parts.

Tokenise once; one eval-mode forward pass through the frozen part over every
distinct row the cell touches (``harness.modeling.frozen_prefix``); the Optuna
trials (``harness.tuning``) train only the top on the first seed's split; each
seed then trains with the best parameters and is tested once
(``harness.train.train_run``). Seed 0 with the best parameters is the best trial
itself, as in ``harness.runner``: its test score, held back from tuning, is used
and it is not trained again. The clock runs from tokenisation to the last
test prediction, model loading included.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import optuna
import torch

from bench.cells import N_CLASSES, BenchData, Cell, SideResult, train_spec
from harness import modeling, tuning
from harness.modeling import freeze_, frozen_prefix, load_classifier, tokenize, top_of
from harness.runner import reusable
from harness.study import SearchSpec
from harness.train import Inputs, train_run

def search_spec(cell: Cell) -> SearchSpec:
    # no pruning: the peer's Optuna default (MedianPruner, 5 start-up trials) never prunes these budgets
    return SearchSpec(trials=cell.trials, lr=cell.lr, batch_size=cell.batch_sizes, sampler="tpe", pruner="none")


def open_search(cell: Cell) -> optuna.Study:
    """The cell's in-memory Optuna study; the peer is handed a fresh one's sampler and pruner."""
    return tuning.open_study(None, cell.name, search_spec(cell), train_spec(), cell.epochs, seed=0)


def run_ours(cell: Cell, data: BenchData, model: str, device: torch.device) -> SideResult:
    with tempfile.TemporaryDirectory() as cache:
        # a cold tokenisation cache each repetition: the peer tokenises afresh too
        os.environ["HARNESS_CACHE"], modeling._memory = cache, None
        started = time.perf_counter()
        inputs, local, labels, depth = prepare(cell, data, model, device)
        study, spec = open_search(cell), train_spec()
        first = data.seed_split(cell.data_size, 0)
        epochs, held = [], []  # held: the trials, as harness.runner.reusable reads them
        for _ in range(cell.trials):
            trial = study.ask()
            params = tuning.suggest(trial, search_spec(cell))
            out = train_run(top(model, depth, seed=0), inputs, labels, local(first.train), local(first.val),
                            np.array([], dtype=np.int64), lr=params["lr"], batch_size=params["batch_size"],
                            epochs=cell.epochs, seed=0, spec=spec, held_rows=local(data.test))
            best = next(h for h in out.history if h["epoch"] == out.best_epoch)
            study.tell(trial, best["val_accuracy"])
            epochs.append(len(out.history))
            # seed 0 also evaluates: its test score, held back from tuning, as in a study
            held.append({"seed": 0, "params": params, "status": out.status, "epochs": len(out.history),
                         "objective": best["val_accuracy"], "held_test": out.held_test})
        params = dict(study.best_params)
        accuracies = []
        for seed in range(cell.seeds):
            same = reusable(held, seed, params)
            if same is not None:  # seed 0 with the best parameters is the best trial: not trained again
                accuracies.append(same["held_test"]["accuracy"])
                epochs.append(same["epochs"])
                continue
            s = data.seed_split(cell.data_size, seed)
            out = train_run(top(model, depth, seed), inputs, labels, local(s.train), local(s.val),
                            local(data.test), lr=params["lr"], batch_size=params["batch_size"],
                            epochs=cell.epochs, seed=seed, spec=spec)
            accuracies.append(out.test["accuracy"])
            epochs.append(len(out.history))
        return SideResult(time.perf_counter() - started, accuracies, params, epochs)


def prepare(cell: Cell, data: BenchData, model: str, device: torch.device):
    """Token ids of the touched rows and, when anything is frozen, their frozen-prefix states.

    Returns (inputs, a map from data rows to positions in them, labels by position, depth).
    """
    rows = data.rows_touched(cell)
    encodings = tokenize(model, [data.texts[i] for i in rows], cell.max_length)
    probe = load_classifier(model, N_CLASSES, 0)
    depth = cell.depth(len(modeling.encoder_parts(probe)[2]))
    states = None
    if depth > 0:
        states = frozen_prefix(probe, encodings, np.arange(len(rows)), [depth], device)[depth]
    return Inputs(encodings, states, device), lambda r: np.searchsorted(rows, r), data.labels[rows], depth


def top(model: str, depth: int, seed: int) -> torch.nn.Module:
    """A fresh classifier (head initialised from ``seed``), frozen to ``depth``, cut to its top."""
    net = load_classifier(model, N_CLASSES, seed)
    freeze_(net, depth)
    return top_of(net, depth) if depth > 0 else net


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
