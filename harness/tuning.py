"""Optuna per grid cell: learning rate and batch size, tuned on the validation set only.

The Optuna storage is a SQLite file beside the results, one Optuna study per
cell, so a rerun resumes where it stopped. The test set plays no part here.
"""

from __future__ import annotations

from typing import Callable

import optuna

from harness.study import SearchSpec, TrainSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def open_study(storage: str, name: str, search: SearchSpec, train: TrainSpec, max_epochs: int,
               seed: int) -> optuna.Study:
    if search.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        # TPE's default 10 random start-up trials would swallow a small budget whole
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, search.trials // 2))
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


def suggest(trial: optuna.Trial, search: SearchSpec) -> dict:
    return {"lr": trial.suggest_float("lr", search.lr[0], search.lr[1], log=True),
            "batch_size": trial.suggest_categorical("batch_size", list(search.batch_size))}


def recover(study: optuna.Study, recorded: dict[int, dict]) -> None:
    """Settle trials left RUNNING by a killed process (this process is the study's only worker).

    A trial whose record reached the store is told its recorded outcome; one that did
    not is failed and its parameters queued again, once: the retry is marked
    ``retry_of`` and a retry that is itself interrupted is not queued a second time.
    """
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        record = recorded.get(trial.number)
        if record is not None:
            settle(study, trial.number, record)
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if "retry_of" not in trial.user_attrs and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def settle(study: optuna.Study, number: int, record: dict) -> None:
    """Tell Optuna the outcome stored in ``record``."""
    status = record["status"]
    if status == "pruned":
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
    elif status in ("ok", "collapsed") and record.get("objective") is not None:
        study.tell(number, record["objective"])
    else:
        study.tell(number, state=optuna.trial.TrialState.FAIL)


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def n_failed(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)))


def pruning_callback(trial: optuna.Trial, metric: str) -> Callable[[int, dict], bool]:
    """Report the validation metric each epoch; True asks the loop to stop (pruned)."""

    def on_epoch(epoch: int, row: dict) -> bool:
        trial.report(row[metric], epoch)
        return trial.should_prune()

    return on_epoch
