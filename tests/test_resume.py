"""Crash and resume: a killed study, rerun with the same command, ends as if never killed.

The end-to-end test kills ``studies/smoke.toml`` with SIGKILL at random moments
(seeded), resumes it, and compares the store with an uninterrupted run; the
smaller tests pin the pieces it relies on: torn-tail repair of the store,
Optuna's recovery of interrupted trials, and parameter draws that do not
depend on where the process was killed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from harness.run import tuning
from harness.records import RunRecord
from harness.store import Results, read_records
from harness.records import record_key
from harness.study import SearchSpec, TrainSpec

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"
RECORD = RunRecord(study="s", cell="c", axes={}, role="eval", seed=1, params={}, device="cpu")


# --- the store ------------------------------------------------------------------------------

@pytest.mark.parametrize("torn", [b'{"cell": "c", "ro', b"{", b'{"cell": "c"}'],
                         ids=["mid-key", "one-byte", "no-newline"])
def test_a_torn_last_line_is_ignored_then_cut_before_the_next_append(tmp_path, torn):
    store = Results(tmp_path)
    store.append(RECORD)
    with open(store.runs, "ab") as handle:
        handle.write(torn)  # a crash in the middle of the second append
    assert store.records() == [RECORD]
    second = dataclasses.replace(RECORD, seed=2)
    store.append(second)
    assert store.records() == [RECORD, second]
    assert store.runs.read_bytes().count(b"\n") == 2


def test_done_keys_name_the_cell_role_and_seed_or_trial(tmp_path):
    store = Results(tmp_path)
    store.append(RECORD)
    store.append(dataclasses.replace(RECORD, role="tune", seed=0, trial=3))
    assert store.done() == {("c", "eval", 1), ("c", "tune", 3)}


# --- Optuna: interrupted trials and parameter draws ------------------------------------------

SEARCHES = {name: SearchSpec(trials=4, lr=(1e-5, 1e-2), batch_size=(8, 16, 32), sampler=name)
            for name in ("tpe", "random")}
SEARCH = SEARCHES["tpe"]


def objective(params: dict) -> float:
    """A made-up validation score with ties: batch sizes 8 and 16 score alike."""
    return round(-(math.log10(params["lr"]) + 3.5) ** 2, 1) + (params["batch_size"] == 32) * 0.05


def open_study(path: Path, search: SearchSpec = SEARCH) -> optuna.Study:
    return tuning.open_study(f"sqlite:///{path}", "cell", search, TrainSpec(), max_epochs=3, seed=7)


def tune(study: optuna.Study, search: SearchSpec, stop_at: int | None = None) -> None:
    """The runner's tuning loop; trial ``stop_at`` is left RUNNING, as a kill would leave it."""
    while tuning.n_finished(study) < search.trials and tuning.n_failed(study) < search.trials:
        trial = tuning.ask(study, search, 0)
        params = tuning.suggest(trial, search)
        if trial.number == stop_at:
            return
        study.tell(trial.number, objective(params))


def complete_params(study: optuna.Study) -> list[tuple]:
    states = (optuna.trial.TrialState.COMPLETE,)
    return [(t.params["lr"], t.params["batch_size"]) for t in study.get_trials(states=states)]


@pytest.mark.parametrize("sampler", SEARCHES)
@pytest.mark.parametrize("kills", [[0], [2], [1, 3], [0, 1]], ids=["first", "third", "two", "retry-killed"])
def test_a_resumed_study_draws_what_an_uninterrupted_one_draws(tmp_path, sampler, kills):
    search = SEARCHES[sampler]
    reference = open_study(tmp_path / "reference.db", search)
    tune(reference, search)
    path = tmp_path / "resumed.db"
    for number in kills:  # each "process" dies while trial `number` runs; a fresh one resumes
        study = open_study(path, search)
        tuning.recover(study, {})
        tune(study, search, stop_at=number)
    study = open_study(path, search)
    tuning.recover(study, {})
    tune(study, search)
    expected, got = complete_params(reference), complete_params(study)
    assert tuning.interrupted(study) == kills
    assert tuning.n_failed(study) == 0  # interruptions are not training failures
    if kills == [0, 1]:
        # trial 0 and then its retry were killed: its parameters are given up and the draws go on
        # (TPE's later draws see another history, so only the next draw is the reference's)
        assert got[0] == expected[1] and len(got) == search.trials
        return
    assert got == expected
    assert tuning.best_params(study) == tuning.best_params(reference)
    assert [t.user_attrs["retry_of"] for t in study.trials if "retry_of" in t.user_attrs] == kills


def record(status: str, objective_value: float | None = None) -> RunRecord:
    return dataclasses.replace(RECORD, role="tune", status=status, objective=objective_value)


@pytest.mark.parametrize("stored, state, requeued", [
    (None, optuna.trial.TrialState.FAIL, True),  # killed mid-trial: failed, and retried once
    (record("ok", 0.7), optuna.trial.TrialState.COMPLETE, False),  # killed between store and tell
    (record("collapsed", 0.5), optuna.trial.TrialState.PRUNED, False),  # never the best parameters
    (record("pruned"), optuna.trial.TrialState.PRUNED, False),
    (record("diverged"), optuna.trial.TrialState.FAIL, False),
    (record("failed"), optuna.trial.TrialState.FAIL, False),
])
def test_recover_settles_a_trial_left_running(tmp_path, stored, state, requeued):
    study = open_study(tmp_path / "o.db")
    trial = study.ask()
    params = tuning.suggest(trial, SEARCH)
    tuning.recover(study, {} if stored is None else {trial.number: stored})
    assert study.trials[0].state == state
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [(t.user_attrs, t.system_attrs["fixed_params"]) for t in waiting] == (
        [({"retry_of": 0}, params)] if requeued else [])
    if stored is not None and state == optuna.trial.TrialState.COMPLETE:
        assert study.trials[0].value == stored.objective


def test_an_interrupted_retry_is_not_retried_again(tmp_path):
    study = open_study(tmp_path / "o.db")
    tuning.suggest(study.ask(), SEARCH)
    tuning.recover(study, {})
    retry = study.ask()  # the queued retry, killed in turn
    tuning.suggest(retry, SEARCH)
    assert retry.user_attrs == {"retry_of": 0}
    tuning.recover(study, {})
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert tuning.interrupted(study) == [0, 1]


def test_recover_repeated_after_a_kill_inside_it_queues_one_retry(tmp_path):
    study = open_study(tmp_path / "o.db")
    trial = study.ask()
    params = tuning.suggest(trial, SEARCH)
    study.enqueue_trial(params, user_attrs={"retry_of": 0})  # recover got this far, then died
    tuning.recover(study, {})
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1


# --- end to end: SIGKILL at random moments ---------------------------------------------------

KILLS = 4
RESUME_SEED = 2024  # seeds the kill moments


def command(results: Path) -> list[str]:
    return [sys.executable, "-m", "harness", "run", str(SMOKE), "--results", str(results), "--quiet",
            "--no-report"]


def env() -> dict:
    return os.environ | {"HF_HUB_OFFLINE": "1"}


def wait_for_records(results: Path, count: int, proc: subprocess.Popen, timeout: float = 900) -> bool:
    """Wait until the store holds ``count`` records; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while len(read_records(results)) < count:
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(f"no new record in {timeout} s")
        time.sleep(0.05)
    return True


def kill_at_random_moments(results: Path, rng: random.Random) -> list[int]:
    """Start the study and SIGKILL it, KILLS times; returns the number of records at each kill.

    The first kill comes at a random moment from the start: loading, the frozen-prefix pass or
    a run. Each later one comes at a random moment after its process stored a record: so the
    grid moves on, and the first run of a resumed process, which is the retry of a trial the
    last kill cut short, is not cut short too (a twice-interrupted trial is given up, by
    design, and the comparison with an uninterrupted run would no longer hold).
    """
    at_kill = []
    while len(at_kill) < KILLS:
        stored = len(read_records(results))
        proc = subprocess.Popen(command(results), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if not at_kill:
            running, moment = True, rng.uniform(1.0, 10.0)  # seconds from the start
        else:
            running, moment = wait_for_records(results, stored + 1, proc), rng.uniform(0.0, 2.0)
        try:
            proc.wait(timeout=moment if running else 0)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            at_kill.append(len(read_records(results)))
        if proc.wait() == 0:
            break  # it finished before the kill
        assert proc.returncode == -signal.SIGKILL
    return at_kill


def eval_records(results: Path) -> dict[tuple, dict]:
    evals = [r for r in read_records(results) if r["role"] == "eval"]
    keys = [record_key(r) for r in evals]
    assert len(keys) == len(set(keys)), f"an evaluation run was recorded twice: {keys}"
    return {k: r for k, r in zip(keys, evals)}


@pytest.mark.slow
def test_a_study_killed_at_random_moments_resumes_to_the_uninterrupted_result(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(command(reference), env=env(), check=True, capture_output=True, timeout=900)
    expected = eval_records(reference)

    resumed = tmp_path / "resumed"
    at_kill = kill_at_random_moments(resumed, random.Random(RESUME_SEED))
    assert len(at_kill) >= 3 and at_kill[-1] < len(read_records(reference)), at_kill
    final = subprocess.run(command(resumed), env=env(), capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stderr

    got = eval_records(resumed)
    assert got.keys() == expected.keys()  # same cells and seeds, none lost, none twice
    for key, want in expected.items():
        assert (got[key]["status"], got[key]["params"], got[key]["test"]) == \
            (want["status"], want["params"], want["test"]), key  # on the CPU, bit for bit
    tune = [r for r in read_records(resumed) if r["role"] == "tune"]
    assert len({record_key(r) for r in tune}) == len(tune), "a tuning trial was recorded twice"
    retried = {(r["cell"], r["retry_of"]) for r in tune if r["retry_of"] is not None}
    assert not retried & {(r["cell"], r["trial"]) for r in tune}, "a trial with a record was retried"
    print(f"records at each kill: {at_kill}; retried trials (cell, trial): {sorted(retried)}")
