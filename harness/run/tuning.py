"""Optuna per grid cell: learning rate and batch size, tuned on the validation set only.

The Optuna storage is a SQLite file beside the results, one Optuna study per
cell, so a rerun resumes where it stopped. The test set plays no part here.
"""

from __future__ import annotations

from typing import Callable

import zlib

import numpy as np
import optuna
from scipy.stats import qmc

from harness.records import RunRecord
from harness.study import SearchSpec, TrainSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
INTERRUPTED = "interrupted_trials"  # study user attribute


def open_study(storage: str, name: str, search: SearchSpec, train: TrainSpec, max_epochs: int,
               seed: int) -> optuna.Study:
    sampler = make_sampler(search, seed, 0)
    if search.pruner == "median":
        # default n_startup_trials=5 would never prune a 4-trial cell
        pruner = optuna.pruners.MedianPruner(n_startup_trials=max(1, search.trials // 2), n_warmup_steps=1)
    elif search.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    else:
        pruner = optuna.pruners.NopPruner()
    direction = "minimize" if train.metric == "val_loss" else "maximize"
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                               direction=direction, load_if_exists=True)


def search_name(cell_id: str, replicate: int = 0) -> str:
    """The Optuna study of a cell's search ``replicate``; also the salt of its sampler seeds, so that the
    searches of one cell draw apart (the first keeps the cell's id: stores from before replicates resume)."""
    return cell_id if replicate == 0 else f"{cell_id}#r{replicate}"


def startup(search: SearchSpec) -> int:
    """TPE's start-up trials: half the budget, rounded up (its default 10 would swallow a small budget whole)."""
    return max(1, -(-search.trials // 2))


def make_sampler(search: SearchSpec, seed: int, draw: int, salt: str = "") -> optuna.samplers.BaseSampler:
    """The sampler for the ``draw``-th drawn trial, seeded from (seed, the cell, draw)."""
    draw_seed = int(np.random.SeedSequence([seed, zlib.crc32(salt.encode()), draw]).generate_state(1)[0])
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=draw_seed)
    return optuna.samplers.TPESampler(seed=draw_seed, n_startup_trials=startup(search))


def start_point(search: SearchSpec, seed: int, draw: int, salt: str = "") -> dict | None:
    """TPE's ``draw``-th start-up trial as a point of a Latin hypercube over the search space, or None.

    Random start-up points of a 2-4 trial budget often land close together and leave a batch
    size untried; a Latin hypercube (McKay, Beckman & Conover 1979; scipy.stats.qmc) puts each
    of the n start-up points in its own n-th of every range: the learning rate's log range and
    the batch sizes. Seeded per cell, so that cells do not all try the same points.
    """
    n = startup(search)
    if search.sampler != "tpe" or draw >= n:
        return None
    cell_seed = int(np.random.SeedSequence([seed, zlib.crc32(salt.encode())]).generate_state(1)[0])
    u = qmc.LatinHypercube(d=2, seed=cell_seed).random(n)[draw]
    low, high = np.log(search.lr[0]), np.log(search.lr[1])
    return {"lr": float(np.exp(low + u[0] * (high - low))),
            "batch_size": search.batch_size[min(int(u[1] * len(search.batch_size)), len(search.batch_size) - 1)]}


def ask(study: optuna.Study, search: SearchSpec, seed: int, salt: str = "") -> optuna.Trial:
    """The next trial: a queued retry, a space-filling start-up point, or a sampler's draw.

    Optuna keeps a sampler's random state in memory only, so a process that resumes
    a study would draw other parameters than an uninterrupted one. A sampler seeded
    afresh for each draw, from (seed, the cell, number of earlier draws), makes the k-th
    drawn trial the same either way; the history it conditions on (finished trials) is the
    same too, because an interrupted trial is failed and its retry is queued, not drawn.
    """
    draws = sum(1 for t in study.get_trials(deepcopy=False) if t.params and "retry_of" not in t.user_attrs)
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    point = start_point(search, seed, draws, salt)
    if point is not None and not waiting:
        study.enqueue_trial(point, user_attrs={"start_point": draws})
    study.sampler = make_sampler(search, seed, draws, salt)
    return study.ask()


def suggest(trial: optuna.Trial, search: SearchSpec) -> dict:
    return {"lr": trial.suggest_float("lr", search.lr[0], search.lr[1], log=True),
            "batch_size": trial.suggest_categorical("batch_size", list(search.batch_size))}


def recover(study: optuna.Study, recorded: dict[int, RunRecord]) -> None:
    """Settle trials left RUNNING by a killed process (this process is the study's only worker).

    A trial whose record reached the store is told its recorded outcome; one that did
    not is failed and its parameters queued again, once: the retry is marked
    ``retry_of`` and a retry that is itself interrupted is not queued a second time.
    """
    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        record = recorded.get(trial.number)
        if record is not None:
            settle(study, trial.number, record)
            continue
        # each step is safe to repeat, in this order, if the process is killed again in between
        study.set_user_attr(INTERRUPTED, sorted(set(interrupted(study)) | {trial.number}))
        if "retry_of" not in trial.user_attrs and trial.params and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def interrupted(study: optuna.Study) -> list[int]:
    """Numbers of the trials failed because their process died, not because training failed."""
    return study.user_attrs.get(INTERRUPTED, [])


def best_params(study: optuna.Study, fallback: dict | None = None) -> dict:
    """Parameters of the best complete trial, the earliest among equals; ``fallback`` when no trial
    completed (the benchmark's choice; a study never evaluates an untuned search).

    Optuna's SQL query leaves ties (common with accuracy on a small validation set)
    in no stated order; trial order is the same in an interrupted and resumed study.
    """
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not trials and fallback is not None:
        return dict(fallback)
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return dict(min(trials, key=lambda t: (sign * t.value, t.number)).params)


def settle(study: optuna.Study, number: int, record: RunRecord) -> None:
    """Tell Optuna the outcome stored in ``record``."""
    state, value = outcome(record)
    study.tell(number, value, state=state)


def outcome(record: RunRecord) -> tuple[optuna.trial.TrialState, float | None]:
    """The Optuna state (and objective) that a tuning record stands for.

    A trial that collapsed to one class (judged on validation) counts as pruned: a finished
    trial that the sampler sees as a poor one and that can never be chosen as the best, even
    when the other trials did worse than always answering the majority class.
    """
    if record.status in ("pruned", "collapsed"):  # a model of one class is never the best parameters
        return optuna.trial.TrialState.PRUNED, None
    if record.status == "ok" and record.objective is not None:
        return optuna.trial.TrialState.COMPLETE, record.objective
    return optuna.trial.TrialState.FAIL, None


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def n_failed(study: optuna.Study) -> int:
    """Trials whose training failed; trials cut short by a killed process do not count."""
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    return len({t.number for t in failed} - set(interrupted(study)))


def completed(study: optuna.Study) -> bool:
    """Whether a trial completed: a search that found parameters worth evaluating."""
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def wants_trial(study: optuna.Study, search: SearchSpec) -> bool:
    """Whether the search runs another trial: its budget (`trials` finished, or as many failed) is not
    spent; or it is, no trial completed (each collapsed, diverged, failed or was pruned), and fewer than
    ``search.trial_cap`` were tried. A search that still finds nothing is untuned: never evaluated."""
    finished, failed = n_finished(study), n_failed(study)
    if finished < search.trials and failed < search.trials:
        return True
    return not completed(study) and finished + failed < search.trial_cap


def pruning_callback(trial: optuna.Trial, metric: str) -> Callable[[int, dict], bool]:
    """Report the validation metric each epoch; True asks the loop to stop (pruned)."""

    def on_epoch(epoch: int, row: dict) -> bool:
        trial.report(row[metric], epoch)
        return trial.should_prune()

    return on_epoch
