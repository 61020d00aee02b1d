"""The execution core: a context built once, one run, one Optuna trial, one evaluation, reuse.

``harness run`` (harness.run.runner), ``harness worker`` (harness.run.worker) and the benchmark
(bench/ours.py) all train through these functions; they differ only in how they pick the
next unit of work and where its record goes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import traceback
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import optuna
import torch
from torch import nn

from harness.run import tuning
from harness.run.display import Display
from harness.errors import stop_if_interrupted
from harness.study import ALL, Cell, ModelSpec, Study
from harness.run.modeling import (Encodings, Prefix, compute_params, describe, freeze_, frozen_prefix,
                                  load_classifier, resolve_depth, tokenize, top_of, whole_of)
from harness.records import RunRecord, now, restored_row
from harness.run.packing import Inputs
from harness.run.train import RunOutput, train_run


class Data(Protocol):
    """What a run reads of its data (harness.data.Dataset; the benchmark's own split)."""

    texts: list[str]
    labels: np.ndarray
    test: np.ndarray
    n_classes: int

    def rows(self, size: int | str, seed: int) -> tuple[np.ndarray, np.ndarray]: ...


def pick_device() -> torch.device:
    wanted = os.environ.get("HARNESS_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads)"


@dataclass
class Context:
    """Everything the runs of a study share, built once: data, tokens, frozen-prefix states."""

    study: Study
    cells: list[Cell]
    data: Data
    device: torch.device
    display: Display
    depths: dict[str, int]  # cell id -> frozen blocks, "all" resolved for the cell's model
    models: dict[str, dict] = field(default_factory=dict)  # model name -> what was loaded (``describe``)
    truncation: dict[tuple[str, int], dict] = field(default_factory=dict)  # texts cut at max_length
    _encodings: dict[tuple[str, int], Encodings] = field(default_factory=dict)
    _inputs: dict[tuple[str, int, int], Inputs] = field(default_factory=dict)

    def encodings(self, model: ModelSpec) -> Encodings:
        """Token ids of every row a run touches, once per model and max_length."""
        key = (model.name, model.max_length)
        if key not in self._encodings:
            rows = self.rows_needed()
            self._encodings[key] = found = tokenize(model.name, self.data.texts, model.max_length, rows,
                                                    self.display.callback(f"tokenising ({model.name})"))
            self.display.end_phase()
            share = found.truncated / max(found.encoded, 1)
            self.truncation[key] = {"model": model.name, "max_length": model.max_length, "texts": found.encoded,
                                    "truncated": found.truncated}
            if found.truncated:
                self.display.log(f"tokens: {found.truncated:,} of {found.encoded:,} texts ({share:.1%}) are longer "
                                 f"than model.max_length = {model.max_length} tokens and were cut")
        return self._encodings[key]

    def inputs(self, cell: Cell) -> Inputs:
        """Token inputs (depth 0), or cached frozen-prefix states: one forward pass per model and length,
        every depth its cells need at once. The cache key holds all that changes the frozen output.
        Only the rows some run touches are held (``rows_needed``)."""
        model, depth = cell.study.model, self.depths[cell.id]
        key = (model.name, model.max_length, depth)
        if key not in self._inputs:
            rows = self.rows_needed()
            if depth == 0:
                self._inputs[key] = Inputs(self.encodings(model), None, self.device, rows=rows)
                return self._inputs[key]
            wanted = sorted({self.depths[c.id] for c in self.cells if c.study.model == model} - {0})
            encodings = self.encodings(model)
            self.display.log(f"frozen-prefix cache: one forward pass of {model.name} over {len(rows):,} texts "
                             f"for depths {wanted}")
            # loading reseeds torch: fork, so that the run which happens to come first in this
            # process (it differs after a resume) trains with the random state it would otherwise have
            with torch.random.fork_rng():
                net = load_classifier(model.name, self.data.n_classes, 0)
                states = frozen_prefix(net, encodings, rows, wanted, self.device,
                                       progress=self.display.callback(f"frozen-prefix pass ({model.name})"))
            self.display.end_phase()
            for d in wanted:
                self._inputs[(model.name, model.max_length, d)] = Inputs(encodings, states[d], self.device, rows=rows)
        return self._inputs[key]

    def rows_needed(self) -> np.ndarray:
        """Every row any run will touch: each seed's largest subset with its validation rows, and the test set.

        Seeds are every seed a cell may reach (``seeds_of``): added searches' and added waves' included.
        """
        parts = [self.data.test]
        for seed in {s for c in self.cells for s in seeds_of(c)}:
            sizes = {c.data_size for c in self.cells if seed in seeds_of(c)}
            largest = max(sizes, key=lambda n: float("inf") if n == ALL else n)
            parts += list(self.data.rows(largest, seed))
        return np.unique(np.concatenate(parts))


def seeds_of(cell: Cell) -> tuple[int, ...]:
    """Every seed a cell may train with: each search's tuning seeds (added searches' too) and every
    evaluation seed (added waves' too)."""
    seeds, search = cell.study.seeds, cell.study.search
    return tuple(s for r in range(search.replicate_cap) for s in seeds.tuning(r)) + seeds.candidates


def load_context(study: Study, cells: list[Cell], data: Data, display: Display) -> Context:
    """Resolve every cell's freezing depth for its model; nothing heavy is computed yet."""
    depths, loaded = {}, {}
    for cell in cells:
        name = cell.study.model.name
        if name not in loaded:
            loaded[name] = load_classifier(name, data.n_classes, 0)
        depths[cell.id] = resolve_depth(cell.freeze, loaded[name])
    return Context(study, cells, data, pick_device(), display, depths,
                   {name: describe(name, model) for name, model in loaded.items()})


def fixed_params(cell: Cell) -> dict:
    """The learning rate and batch size a cell uses without tuning (or when every trial failed)."""
    return {"lr": cell.study.search.fixed_lr, "batch_size": cell.study.search.fixed_batch_size}


def run_one(ctx: Context, cell: Cell, seed: int, params: dict, role: str, on_epoch=None,
            hold_test: bool = False, replicate: int = 0) -> RunRecord:
    """Train one model; any exception becomes a 'failed' record and the grid goes on.

    ``hold_test`` (tuning runs only): a run that finishes ok is also scored on the test set,
    under ``held_test``, which tuning never reads (the record's ``test`` stays empty).
    """
    return train_one(ctx, cell, seed, params, role, on_epoch, hold_test, replicate)[0]


def train_one(ctx: Context, cell: Cell, seed: int, params: dict, role: str, on_epoch=None,
              hold_test: bool = False, replicate: int = 0) -> tuple[RunRecord, nn.Module | None]:
    """``run_one``, and the trained model at its restored epoch: the whole model, also where only its top
    trained from cached states (None when the run failed)."""
    depth, data, spec = ctx.depths[cell.id], ctx.data, cell.study
    record = RunRecord(study=ctx.study.name, cell=cell.id, axes=dict(cell.values), role=role, seed=seed,
                       params=dict(params), device=device_name(ctx.device), freeze_depth=depth, replicate=replicate)

    def step(epoch: int, row: dict) -> bool:
        stop_if_interrupted()
        ctx.display.epoch(row)
        return bool(on_epoch and on_epoch(epoch, row))

    model = None
    try:
        train_rows, val_rows = data.rows(cell.data_size, seed)
        model = load_classifier(spec.model.name, data.n_classes, seed)
        record.trainable_params = freeze_(model, depth)
        record.total_params = sum(p.numel() for p in model.parameters())
        prefix = Prefix.of(model)
        if depth > 0:
            model = top_of(model, depth)
        test_rows = data.test if role == "eval" else data.test[:0]  # tuning never sees the test set
        inputs = ctx.inputs(cell)
        record.work = work(model, inputs, depth, train_rows, val_rows, params["batch_size"])
        out = train_run(model, inputs, data.labels, train_rows, val_rows, test_rows,
                        lr=params["lr"], batch_size=params["batch_size"], epochs=cell.epochs, seed=seed,
                        spec=spec.train, on_epoch=step, held_rows=data.test if hold_test else None)
        _fill(record, out, len(train_rows), len(val_rows), len(test_rows))
        model = whole_of(model, prefix).eval()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded with its reason; the grid goes on
        reason = f"{type(exc).__name__}: {exc}"
        if "out of memory" in reason.lower():
            reason = "out of memory even at micro-batch 1: " + reason
        record.status, record.error, record.traceback = "failed", reason[:2000], traceback.format_exc()[-4000:]
        model = None
    record.finished = now()
    return record, model


def work(model: torch.nn.Module, inputs: Inputs, depth: int, train_rows: np.ndarray, val_rows: np.ndarray,
         batch_size: int) -> dict[str, float]:
    """One epoch's work as the cost model counts it: optimizer steps, and millions of parameter-positions
    through the trained part for the training and the validation rows (a position is a token, or the
    one cached vector a classifier-only run trains from)."""
    params = compute_params(model, depth)
    vector = inputs.states is not None and inputs.states.shape[1] == 1
    positions = np.ones(len(inputs.encodings.lengths)) if vector else inputs.encodings.lengths
    return {"batches": float(math.ceil(len(train_rows) / batch_size)),
            "train": round(float(positions[train_rows].sum()) * params / 1e6, 3),
            "val": round(float(positions[val_rows].sum()) * params / 1e6, 3)}


def _fill(record: RunRecord, out: RunOutput, n_train: int, n_val: int, n_test: int) -> None:
    best = restored_row(out.history, out.best_epoch)
    record.status, record.history, record.best_epoch = out.status, out.history, out.best_epoch or None
    record.stopped_epoch = len(out.history)
    record.val = {k.removeprefix("val_"): best[k] for k in ("val_loss", "val_accuracy", "val_f1") if k in best}
    record.test, record.test_last = out.test, out.test_last
    record.held_test = out.held_test | ({"last": out.held_last} if out.held_last else {})
    record.train_size, record.val_size, record.test_size = n_train, n_val, n_test
    record.micro_batch, record.oom_retries, record.seconds = out.micro_batch, out.oom_retries, round(out.seconds, 3)


def run_trial(ctx: Context, cell: Cell, trial: optuna.Trial, replicate: int = 0) -> RunRecord:
    """One Optuna trial of search ``replicate``: suggest, train on each of its tuning seeds, the record
    with the mean objective."""
    study = cell.study
    params = tuning.suggest(trial, study.search)
    on_epoch = tuning.pruning_callback(trial, study.train.metric)
    outcomes, seeds = [], study.seeds.tuning(replicate)
    for i, seed in enumerate(seeds):  # pruning follows the first tuning seed only
        ctx.display.start_run(f"trial {trial.number} seed {seed} lr {params['lr']:.1e} "
                              f"bs {params['batch_size']}", cell.epochs)
        # the stored run of a tuning seed that also evaluates keeps a test evaluation, held back from
        # tuning, for the evaluation run it may turn out to be (see ``reusable``)
        hold = i == 0 and seed in study.seeds.evaluate  # train_run holds nothing without a test set
        outcomes.append(run_one(ctx, cell, seed, params, role="tune", on_epoch=on_epoch if i == 0 else None,
                                hold_test=hold, replicate=replicate))
        if outcomes[-1].status not in ("ok", "collapsed"):
            break
    record = dataclasses.replace(outcomes[0], trial=trial.number, retry_of=trial.user_attrs.get("retry_of"),
                                 tune_seeds=list(seeds))
    if all(o.status in ("ok", "collapsed") for o in outcomes) and len(outcomes) == len(seeds):
        record.objective = float(np.mean([o.val[study.train.metric.removeprefix("val_")] for o in outcomes]))
    return record


def evaluation(ctx: Context, cell: Cell, seed: int, params: dict, tuned: list[RunRecord],
               replicate: int = 0) -> RunRecord:
    """The evaluation run of ``seed`` with search ``replicate``'s parameters: trained now, or, when one
    of that search's trials (``tuned``) already trained exactly this run, that trial with its held-back
    test evaluation."""
    same = reusable([r for r in tuned if r.replicate == replicate], seed, params)
    if same is None:
        return run_one(ctx, cell, seed, params, role="eval", replicate=replicate)
    ctx.display.log(f"{cell.id}: eval seed {seed} is trial {same.trial} (same seed, split, lr and batch "
                    "size): its held-back test evaluation is used, nothing is trained again")
    return from_trial(same)


def reusable(tuned: list[RunRecord], seed: int, params: dict) -> RunRecord | None:
    """A finished tuning run that an evaluation run of ``seed`` with ``params`` would repeat.

    Same cell, seed (so the same training subset and initialisation), learning rate and batch
    size, a complete trial (not pruned, no later tuning seed failed; collapsed counts, as its
    evaluation run would collapse alike) with a held-back test score: the same computation, bit
    for bit on the CPU (tests/test_determinism.py), so
    training it again would only cost time.
    """
    return next((r for r in tuned if r.seed == seed and r.params == params and r.status in ("ok", "collapsed")
                 and r.objective is not None and (r.held_test or {}).get("pred")), None)


def from_trial(tuned: RunRecord) -> RunRecord:
    """The evaluation record of a tuning run (see ``reusable``); its training seconds stay with the trial."""
    test = {k: v for k, v in tuned.held_test.items() if k != "last"}
    return dataclasses.replace(
        tuned, role="eval", trial=None, retry_of=None, tune_seeds=None, objective=None, held_test={}, test=test,
        test_last=tuned.held_test.get("last", {}), test_size=len(test["pred"]), status=tuned.status,
        reused_from_trial=tuned.trial, finished=now())


__all__ = ["Context", "Data", "device_name", "evaluation", "fixed_params", "from_trial", "load_context", "seeds_of",
           "pick_device", "reusable", "run_one", "run_trial", "train_one"]
