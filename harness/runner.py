"""Study -> grid -> runs -> store. The one place that drives a study from start to end.

Rerunning a study skips every record already in the store; Optuna resumes from
its SQLite storage beside the results.
"""

from __future__ import annotations

import datetime as dt
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch

from harness import tuning
from harness.data import Dataset, load_dataset
from harness.display import Display
from harness.grid import Cell, expand
from harness.modeling import Encodings, freeze_, frozen_prefix, load_classifier, resolve_depth, tokenize, \
    top_of
from harness.store import Store, check_owner, read_records, record_key, write_atomic, write_manifest
from harness.study import Study
from harness.train import Inputs, RunOutput, is_collapsed, train_run


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
    """Everything a run needs that is shared across the study, built once."""

    study: Study
    dataset: Dataset
    encodings: Encodings
    device: torch.device
    depths: dict[Cell, int]
    store: Store
    display: Display
    _inputs: dict[int, Inputs] | None = None

    def inputs(self, depth: int) -> Inputs:
        """Token inputs for depth 0; cached frozen-prefix states otherwise (all depths in one pass)."""
        if self._inputs is None:
            self._inputs = {0: Inputs(self.encodings, None, self.device)}
        if depth not in self._inputs:
            wanted = sorted({d for d in self.depths.values() if d > 0})
            self.display.log(f"frozen-prefix cache: one forward pass over {len(self.rows_needed())} texts "
                             f"for depths {wanted}")
            # loading reseeds torch: fork, so that the run which happens to come first in this
            # process (it differs after a resume) trains with the random state it would otherwise have
            with torch.random.fork_rng():
                model = load_classifier(self.study.model.name, self.dataset.n_classes, 0)
                states = frozen_prefix(model, self.encodings, self.rows_needed(), wanted, self.device)
            for d in wanted:
                self._inputs[d] = Inputs(self.encodings, states[d], self.device)
        return self._inputs[depth]

    def rows_needed(self) -> np.ndarray:
        """Every row any run will touch: the largest subset of each seed, validation and test."""
        seeds = set(self.study.seeds.tune) | set(self.study.seeds.evaluate)
        largest = max(self.study.grid.data_sizes, key=lambda n: float("inf") if n == "all" else n)
        parts = [self.dataset.subset(largest, s) for s in seeds] + [self.dataset.val, self.dataset.test]
        return np.unique(np.concatenate(parts))


def prepare(study: Study, study_file: str, results: Path, display: Display) -> Context:
    """Load and check everything before the results directory is touched."""
    ctx = load_context(study, results, display)
    write_manifest(results, study.to_dict(), study.fingerprint(), study_file, device_name(ctx.device))
    write_splits(results, ctx.dataset)
    return ctx


def load_context(study: Study, results: Path, display: Display) -> Context:
    """Everything ``prepare`` loads, without writing: distributed workers write under a lock."""
    check_owner(results, study.name, study.fingerprint())
    dataset = load_dataset(study.data)
    for size in study.grid.data_sizes:
        dataset.subset(size, study.seeds.evaluate[0])  # raises if larger than the pool
    probe = load_classifier(study.model.name, dataset.n_classes, 0)
    depths = {cell: resolve_depth(cell.freeze, probe) for cell in expand(study)}
    encodings = tokenize(study.model.name, dataset.texts, study.model.max_length)
    device = pick_device()
    if dataset.dropped_empty:
        display.log(f"data: dropped {dataset.dropped_empty} rows with empty text")
    return Context(study, dataset, encodings, device, depths, Store(results), display)


def write_splits(results: Path, dataset: Dataset) -> None:
    """The fixed validation and test labels, so the report can score stored predictions."""
    import json

    path = results / "splits.json"
    if path.exists():
        return
    splits = {"class_names": dataset.class_names, "train_pool": int(len(dataset.train_pool)),
              "val_labels": "".join(map(str, dataset.labels[dataset.val])),
              "test_labels": "".join(map(str, dataset.labels[dataset.test])),
              "dropped_empty": dataset.dropped_empty}
    write_atomic(path, json.dumps(splits))  # a torn file would be kept: it exists


def run_study(study: Study, study_file: str, results: Path, display: Display) -> list[dict]:
    ctx = prepare(study, study_file, results, display)
    cells = expand(study)
    done = ctx.store.done()
    finished = [c for c in cells if all((c.id, "eval", s) in done for s in study.seeds.evaluate)]
    display.start_grid(len(cells), len(finished))
    for cell in cells:
        if cell in finished:
            continue
        run_cell(ctx, cell)
        display.cell_done()
    return read_records(results)


def run_cell(ctx: Context, cell: Cell) -> None:
    study = ctx.study
    done = ctx.store.done()
    n_runs = study.search.trials + len(study.seeds.evaluate)
    ctx.display.start_cell(cell.id, n_runs, sum(1 for k in done if k[0] == cell.id))
    try:  # the frozen-prefix pass now, before a trial is RUNNING: a kill during it costs no retry
        ctx.inputs(ctx.depths[cell])
    except Exception:  # noqa: BLE001 - each run of the cell meets it again and records it as failed
        pass
    params = tune_cell(ctx, cell) if study.search.trials else {
        "lr": study.search.fixed_lr, "batch_size": study.search.fixed_batch_size}
    tuned = [r for r in read_records(ctx.store.dir) if r["cell"] == cell.id and r["role"] == "tune"]
    for seed in study.seeds.evaluate:
        if (cell.id, "eval", seed) in done:
            continue
        ctx.display.start_run(f"eval seed {seed}", cell.epochs)
        record = evaluation(ctx, cell, seed, params, tuned)
        ctx.store.append(record)
        ctx.display.run_done(record["status"])


def evaluation(ctx: Context, cell: Cell, seed: int, params: dict, tuned: list[dict]) -> dict:
    """The evaluation run of ``seed``: trained now, or, when a tuning trial already trained exactly
    this run, that trial with its held-back test evaluation."""
    same = reusable(tuned, seed, params)
    if same is None:
        return run_one(ctx, cell, seed, params, role="eval")
    ctx.display.log(f"{cell.id}: eval seed {seed} is trial {same['trial']} (same seed, split, lr and batch "
                    "size): its held-back test evaluation is used, nothing is trained again")
    return from_trial(same)


def reusable(tuned: list[dict], seed: int, params: dict) -> dict | None:
    """A finished tuning run that an evaluation run of ``seed`` with ``params`` would repeat.

    Same cell, seed (so the same training subset and initialisation), learning rate and batch
    size, a complete trial (not pruned, no later tuning seed failed) with a held-back test
    score: the same computation, bit for bit on the CPU
    (tests/test_determinism.py), so training it again would only cost time.
    """
    return next((r for r in tuned if r["seed"] == seed and r["params"] == params and r["status"] == "ok"
                 and r.get("objective") is not None and (r.get("held_test") or {}).get("pred")), None)


def from_trial(tuned: dict) -> dict:
    """The evaluation record of a tuning run (see ``reusable``); its training seconds stay with the trial."""
    record = {k: v for k, v in tuned.items() if k not in ("trial", "retry_of", "tune_seeds", "objective", "held_test")}
    test = tuned["held_test"]
    return record | {"role": "eval", "trial": None, "test": test, "test_size": len(test["pred"]),
                     "status": "collapsed" if is_collapsed(test) else "ok", "reused_from_trial": tuned["trial"],
                     "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def tune_cell(ctx: Context, cell: Cell) -> dict:
    study, search = ctx.study, ctx.study.search
    recorded = {r["trial"]: r for r in read_records(ctx.store.dir) if r["cell"] == cell.id and r["role"] == "tune"}
    storage = f"sqlite:///{ctx.store.dir.resolve() / 'optuna.db'}"
    optuna_study = tuning.open_study(storage, cell.id, search, study.train, cell.epochs, study.seeds.tune[0])
    tuning.recover(optuna_study, recorded)
    while tuning.n_finished(optuna_study) < search.trials and tuning.n_failed(optuna_study) < search.trials:
        trial = tuning.ask(optuna_study, search, study.seeds.tune[0])  # same draws after a resume
        record = run_trial(ctx, cell, trial)
        ctx.store.append(record)  # stored first: a crash before tell() is settled by recover()
        tuning.settle(optuna_study, trial.number, record)
        ctx.display.run_done(record["status"])
    completed = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        ctx.display.log(f"{cell.id}: no tuning trial completed; using the fixed lr and batch size")
        return {"lr": search.fixed_lr, "batch_size": search.fixed_batch_size}
    return tuning.best_params(optuna_study)


def run_trial(ctx: Context, cell: Cell, trial: optuna.Trial) -> dict:
    """One Optuna trial: suggest, train on every tuning seed, return the record with the mean objective."""
    study = ctx.study
    params = tuning.suggest(trial, study.search)
    on_epoch = tuning.pruning_callback(trial, study.train.metric)
    outcomes = []
    for i, seed in enumerate(study.seeds.tune):  # pruning follows the first tuning seed only
        ctx.display.start_run(f"trial {trial.number} seed {seed} lr {params['lr']:.1e} "
                              f"bs {params['batch_size']}", cell.epochs)
        # the stored run of a tuning seed that also evaluates keeps a test evaluation, held back from
        # tuning, for the evaluation run it may turn out to be (see ``reusable``)
        hold = i == 0 and seed in study.seeds.evaluate  # train_run holds nothing without a test set
        outcomes.append(run_one(ctx, cell, seed, params, role="tune", on_epoch=on_epoch if i == 0 else None,
                                hold_test=hold))
        if outcomes[-1]["status"] not in ("ok", "collapsed"):
            break
    record = outcomes[0] | {"trial": trial.number, "retry_of": trial.user_attrs.get("retry_of"),
                            "tune_seeds": list(study.seeds.tune)}
    if all(o["status"] in ("ok", "collapsed") for o in outcomes) and len(outcomes) == len(study.seeds.tune):
        record["objective"] = float(np.mean([o["val"][study.train.metric.removeprefix("val_")]
                                             for o in outcomes]))
    return record


def run_one(ctx: Context, cell: Cell, seed: int, params: dict, role: str, on_epoch=None,
            hold_test: bool = False) -> dict:
    """Train one model; any exception becomes a 'failed' record and the grid goes on.

    ``hold_test`` (tuning runs only): a run that finishes ok is also scored on the test set,
    under ``held_test``, which tuning never reads (the record's ``test`` stays empty).
    """
    depth = ctx.depths[cell]
    data = ctx.dataset
    record = {"study": ctx.study.name, "cell": cell.id, "data_size": cell.data_size, "epochs": cell.epochs,
              "freeze": cell.freeze, "freeze_depth": depth, "role": role, "seed": seed, "trial": None,
              "params": dict(params), "device": device_name(ctx.device)}

    def step(epoch: int, row: dict) -> bool:
        ctx.display.epoch(row)
        return bool(on_epoch and on_epoch(epoch, row))

    try:
        train_rows = data.subset(cell.data_size, seed)
        model = load_classifier(ctx.study.model.name, data.n_classes, seed)
        record["trainable_params"] = freeze_(model, depth)
        record["total_params"] = sum(p.numel() for p in model.parameters())
        if depth > 0:
            model = top_of(model, depth)
        test_rows = data.test if role == "eval" else data.test[:0]  # tuning never sees the test set
        out = train_run(model, ctx.inputs(depth), data.labels, train_rows, data.val, test_rows,
                        lr=params["lr"], batch_size=params["batch_size"], epochs=cell.epochs, seed=seed,
                        spec=ctx.study.train, on_epoch=step,
                        held_rows=data.test if hold_test else None)
        record |= result_fields(out, len(train_rows), len(data.val), len(test_rows))
        if out.held_test:
            record["held_test"] = out.held_test
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded with its reason; the grid goes on
        reason = f"{type(exc).__name__}: {exc}"
        if "out of memory" in reason.lower():
            reason = "out of memory even at micro-batch 1: " + reason
        record |= {"status": "failed", "error": reason[:2000], "traceback": traceback.format_exc()[-4000:],
                   "history": [], "best_epoch": None, "val": {}, "test": {}}
    record["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return record


def result_fields(out: RunOutput, n_train: int, n_val: int, n_test: int) -> dict:
    best = next((h for h in out.history if h["epoch"] == out.best_epoch), {})
    return {"status": out.status, "history": out.history, "best_epoch": out.best_epoch or None,
            "stopped_epoch": len(out.history),
            "val": {k.removeprefix("val_"): best[k] for k in ("val_loss", "val_accuracy", "val_f1") if k in best},
            "test": out.test, "train_size": n_train, "val_size": n_val, "test_size": n_test,
            "micro_batch": out.micro_batch, "oom_retries": out.oom_retries, "seconds": round(out.seconds, 3)}


__all__ = ["run_study", "record_key"]
