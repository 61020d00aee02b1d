"""Many workers, one study: every slot done exactly once, killed workers' trials retried, one store.

The fast tests run the real claiming, heartbeat and retry code in forked worker
processes whose training is replaced by a stub; the slow tests run three real
``python -m harness worker`` processes on a shrunk ``studies/smoke.toml`` and
kill one with SIGKILL mid-trial. Both run against a journal file and a real
PostgreSQL server: ``HARNESS_TEST_POSTGRES`` (set by ``.ci/run``), else a
throwaway server started with ``.ci/postgres``; where none can be started the
PostgreSQL cases are skipped with the reason, except under CI, where they fail.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from harness import evidence, waves

from harness.run import distributed

from harness.run import tuning

from harness.run import worker
from harness.study import axes_of, expand, load_study
from harness.run.display import Display
from harness.errors import HarnessError, redact
from harness.records import RunRecord
from harness.store import Results, read_records
from harness.records import record_key

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"
HEARTBEAT, GRACE = 1, 3  # seconds, for the stub workers


# --- storage URLs ----------------------------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    ("postgresql://alice:s3cret@db.lab:5432/optuna", "postgresql://***@db.lab:5432/optuna"),
    ("postgresql+psycopg2://alice@db.lab/optuna", "postgresql+psycopg2://***@db.lab/optuna"),
    ("postgresql://db.lab/optuna", "postgresql://db.lab/optuna"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ("journal:///shared/study.log", "journal:///shared/study.log"),
])
def test_credentials_never_shown(url, shown):
    assert redact(url) == shown


@pytest.mark.parametrize("url, heartbeat, grace, message", [
    ("redis://host/0", 60, 180, "expected postgresql://"),
    ("journal://", 60, 180, "expected journal:///path/to/file"),
    ("sqlite:///x.db", 0, 180, "heartbeat 0 s"),
    ("sqlite:///x.db", 60, 60, "grace 60 s"),
    ("postgresql://alice:s3cret@127.0.0.1:1/none", 60, 180, "cannot open"),
])
def test_bad_storage_fails_naming_it_without_the_password(url, heartbeat, grace, message):
    with pytest.raises(HarnessError, match=message) as error:
        distributed.open_storage(url, heartbeat, grace)
    assert "s3cret" not in str(error.value)


# --- PostgreSQL ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres_server():
    url = os.environ.get("HARNESS_TEST_POSTGRES")
    if url:
        yield url
        return
    folder = tempfile.mkdtemp(prefix="harness-pg-")  # under /tmp: the server's user must reach it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = subprocess.run([ROOT / ".ci" / "postgres", "start", folder, str(port)], capture_output=True,
                             text=True, timeout=120)
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        reason = f"no PostgreSQL server could be started: {started.stderr.strip()[-400:]}"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must test PostgreSQL: .ci/run installs and starts it)")
        pytest.skip(reason)
    yield started.stdout.strip()
    subprocess.run([ROOT / ".ci" / "postgres", "stop", folder], timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres(postgres_server):
    """A fresh database on the server, so tests never see each other's studies."""
    import psycopg

    name = f"harness_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:  # CREATE DATABASE: no transaction
        connection.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["journal", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "journal":
        return f"journal://{tmp_path / 'journal.log'}"
    return request.getfixturevalue("postgres")


# --- stub workers: the real claiming and retrying, training replaced -------------------------

# the stub's test set: 120 examples in 24 reviews, labels alternating
STUB_SPLITS = {"test_labels": "01" * 60, "test_groups": [str(i // 5) for i in range(120)]}


def stub_test(cell_id: str, seed: int) -> dict:
    """A run's test predictions, a function of its cell and seed: every worker makes up the same ones."""
    rng = np.random.default_rng([zlib.crc32(cell_id.encode()), seed])
    p = 0.7 + 0.05 * (zlib.crc32(cell_id.encode()) % 3) + rng.normal(0, 0.02)
    right = rng.random(120) < p
    labels = STUB_SPLITS["test_labels"]
    pred = "".join(lab if ok else str(1 - int(lab)) for lab, ok in zip(labels, right))
    return {"pred": pred, "accuracy": float(right.mean()), "f1": float(right.mean())}


def stub_worker(url: str, log: Path, hang: bool, overrides: tuple = (), collapse: tuple = ()) -> None:
    """A worker whose 'training' writes one line per unit it starts; ``hang``: stop in the first one;
    ``collapse``: (cell id, search) pairs whose every tuning trial collapses."""
    study = load_study(SMOKE, list(overrides))
    shared = distributed.Shared(study, distributed.open_storage(url, HEARTBEAT, GRACE), GRACE)
    options = worker.Options(url, HEARTBEAT, GRACE, poll=0.2)
    ctx = SimpleNamespace(display=Display(enabled=False), device=__import__("torch").device("cpu"), depths={},
                          cells=[], data=SimpleNamespace(splits=lambda: STUB_SPLITS))

    def train(ctx, shared, unit):
        slot = unit.slot
        with open(log, "a") as handle:
            handle.write(json.dumps([slot.cell.id, slot.role, slot.index, unit.trial.number, os.getpid(),
                                     slot.replicate]) + "\n")
        if hang:
            time.sleep(3600)  # killed here, mid-trial
        time.sleep(0.05)
        record = RunRecord(study=study.name, cell=slot.cell.id, axes=dict(slot.cell.values), role=slot.role,
                           seed=0, params={}, device="cpu", seconds=0.05, replicate=slot.replicate)
        if slot.role == "tune":
            params = tuning.suggest(unit.trial, study.search)
            if (slot.cell.id, slot.replicate) in collapse:
                return dataclasses.replace(record, trial=unit.trial.number, params=params, status="collapsed")
            return dataclasses.replace(record, trial=unit.trial.number, params=params, objective=params["lr"])
        assert distributed.settled(distributed.survey(shared, slot.cell, "tune", slot.replicate))  # tuning first
        return dataclasses.replace(record, seed=slot.index, params=worker.eval_params(shared, slot.cell, slot.replicate),
                                   test=stub_test(slot.cell.id, slot.index),
                                   wave=shared.wave_of(slot.cell, slot.index, slot.replicate))

    worker.train = train
    worker.stop_on_sigterm()
    worker.work(ctx, shared, options)


def start_stubs(url: str, log: Path, n: int, hang: bool = False, overrides: tuple = (), collapse: tuple = ()) -> list:
    fork = multiprocessing.get_context("fork")
    workers = [fork.Process(target=stub_worker, args=(url, log, hang and i == 0, overrides, collapse))
               for i in range(n)]
    for w in workers:
        w.start()
    return workers


def units_started(log: Path) -> list[list]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def all_slots(study) -> list[tuple]:
    return [(c.id, role, i) for c in expand(study) for role in ("tune", "eval")
            for i in (range(study.search.trials) if role == "tune" else study.seeds.evaluate)]


def export(url: str, results: Path, overrides: tuple = ()) -> list[dict]:
    study = load_study(SMOKE, list(overrides))
    shared = distributed.Shared(study, distributed.open_storage(url, HEARTBEAT, GRACE), GRACE)
    worker.export(shared, Results(results), url)
    worker.export(shared, Results(results), url)  # twice: nothing added the second time
    return read_records(results)


def check_store(records: list[dict], study) -> None:
    """Every tuning slot and evaluation seed once, no duplicate key, evaluation with the best parameters."""
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys))
    evals = sorted((r["cell"], r["seed"]) for r in records if r["role"] == "eval")
    assert evals == sorted((c.id, s) for c in expand(study) for s in study.seeds.evaluate)
    for cell in expand(study):
        assert sum(r["cell"] == cell.id and r["role"] == "tune" for r in records) == study.search.trials


def test_three_workers_share_every_slot_exactly_once(storage_url, tmp_path):
    log = tmp_path / "started.jsonl"
    workers = start_stubs(storage_url, log, 3)
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    started = [tuple(u[:3]) for u in units_started(log)]
    study = load_study(SMOKE)
    assert sorted(started) == sorted(all_slots(study))  # none twice, none skipped
    assert len({u[4] for u in units_started(log)}) > 1  # shared, not one worker doing all
    records = export(storage_url, tmp_path / "results")
    check_store(records, study)
    for r in records:
        if r["role"] == "eval":  # every evaluation seed used the cell's best tuning trial (the stub's objective: lr)
            best = max((t for t in records if t["cell"] == r["cell"] and t["role"] == "tune"),
                       key=lambda t: (t["objective"], -t["trial"]))
            assert r["params"] == best["params"]
    manifest = json.loads((tmp_path / "results" / "manifest.json").read_text())
    assert len(manifest["workers"]) == 3 and manifest["storage"] == redact(storage_url)


def test_workers_run_every_search_and_catch_a_failed_one(storage_url, tmp_path):
    """Two searches per cell; one cell's second search collapses in every trial: the workers give it one more
    trial at a time up to twice its budget, never evaluate it, and run every other search and seed once."""
    log, overrides = tmp_path / "started.jsonl", ("search.replicates=2",)
    study = load_study(SMOKE, list(overrides))
    failing = (expand(study)[1].id, 1)
    workers = start_stubs(storage_url, log, 3, overrides=overrides, collapse=(failing,))
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    started = [(u[0], u[1], u[2], u[5]) for u in units_started(log)]
    assert len(started) == len(set(started))  # no unit twice
    records = export(storage_url, tmp_path / "results", overrides)
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys))
    for cell in expand(study):
        for rep in (0, 1):
            tunes = [r for r in records if r["cell"] == cell.id and r["role"] == "tune" and r["replicate"] == rep]
            evals = sorted(r["seed"] for r in records if r["cell"] == cell.id and r["role"] == "eval"
                           and r["replicate"] == rep)
            if (cell.id, rep) == failing:
                assert len(tunes) == study.search.trial_cap and evals == []
            else:
                assert len(tunes) == study.search.trials and evals == list(study.seeds.evaluate)
                best = max(tunes, key=lambda t: (t["objective"], -t["trial"]))
                assert all(r["params"] == best["params"] for r in records if r["cell"] == cell.id
                           and r["role"] == "eval" and r["replicate"] == rep)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_workers_trial_is_retried_by_the_others_and_never_stored(storage_url, tmp_path, stop):
    log = tmp_path / "started.jsonl"
    victim, *others = start_stubs(storage_url, log, 3, hang=True)
    deadline = time.monotonic() + 60
    while not any(u[4] == victim.pid for u in units_started(log)) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(victim.pid, stop)
    victim.join()
    killed = next(u for u in units_started(log) if u[4] == victim.pid)
    for w in others:
        w.join(120)
        assert w.exitcode == 0
    started = [tuple(u[:3]) for u in units_started(log)]
    study = load_study(SMOKE)
    assert sorted(started) == sorted(all_slots(study) + [tuple(killed[:3])])  # only the killed one twice
    records = export(storage_url, tmp_path / "results")
    check_store(records, study)
    assert not any(r["cell"] == killed[0] and r["role"] == killed[1] and r["optuna_trial"] == killed[3]
                   for r in records)
    shared = distributed.Shared(study, distributed.open_storage(storage_url, HEARTBEAT, GRACE), GRACE)
    cell = next(c for c in expand(study) if c.id == killed[0])
    trials = shared.optuna_study(cell, killed[1]).get_trials(deepcopy=False)
    dead = next(t for t in trials if t.number == killed[3])
    assert dead.state == optuna.trial.TrialState.FAIL and distributed.own(dead, "result") is None
    assert any(distributed.retry_of(t) == killed[3] for t in trials)
    assert bool(distributed.own(dead, "interrupted")) == (stop == signal.SIGTERM)  # SIGTERM: failed at once


ADAPTIVE = ("seeds.max_evaluate=5", "analysis.smallest_effect=0.05")  # 2 seeds, then up to 5


def test_workers_plan_each_added_wave_once_and_train_its_seeds(storage_url, tmp_path):
    """Three stub workers on an adaptive study: once every slot is settled, one worker plans the next
    wave and enqueues its evaluation seeds; all of them train those; the plan is the one the records give."""
    url, log = storage_url, tmp_path / "started.jsonl"
    for w in start_stubs(url, log, 3, overrides=ADAPTIVE):
        w.join(120)
        assert w.exitcode == 0
    study = load_study(SMOKE, list(ADAPTIVE))
    shared = distributed.Shared(study, distributed.open_storage(url, HEARTBEAT, GRACE), GRACE)
    plans = shared.waves()
    assert len(plans) >= 2 and plans[-1]["stop"] and not plans[0]["stop"]
    added = sorted((cell, s) for p in plans for cell, seeds in p["seeds"].items() for s in seeds)
    started = sorted(tuple(u[:3]) for u in units_started(log))
    assert started == sorted(all_slots(study) + [(cell, "eval", s) for cell, s in added])  # each once
    records = export(url, tmp_path / "results", overrides=ADAPTIVE)
    assert sorted((r["cell"], r["seed"]) for r in records if r["role"] == "eval" and r["wave"] >= 1) == added
    assert json.loads((tmp_path / "results" / "manifest.json").read_text())["waves"] == plans
    first = [RunRecord.from_dict(r) for r in records if r["role"] == "tune" or r["wave"] == 0]
    found = evidence.from_records(first, STUB_SPLITS, axes_of(study), expand(study))
    assert plans[0] == waves.plan_next(found, expand(study), [], study.analysis.alpha, study.analysis.smallest_effect)


def test_a_wave_whose_planner_died_is_planned_by_a_waiter(tmp_path):
    """The planner won the wave's create_study and died: a waiter stores the plan after the grace period,
    and repair enqueues the slots it names."""
    study = load_study(SMOKE, list(ADAPTIVE))
    shared = distributed.Shared(study, distributed.open_storage(f"journal://{tmp_path / 'j.log'}", 1, 2), 1)
    optuna.create_study(storage=shared.storage, study_name=f"{shared.prefix}#wave1")  # and no plan after it
    cell = expand(study)[0]
    plan = {"wave": 1, "seeds": {cell.id: [3, 4]}, "stop": False}
    assert distributed.plan_wave(shared, 1, lambda: plan, poll=0.1) == plan == shared.waves()[0]
    states = distributed.survey(shared, cell, "eval")
    assert [s.index for s in states] == [1, 2, 3, 4] and shared.wave_of(cell, 4) == 1
    assert distributed.repair(shared, states) == 4  # no trial for any of them yet: all enqueued


def pop_and_die(url: str) -> None:
    """Plan the study, pop a trial and die before its first heartbeat."""
    shared = distributed.Shared(load_study(SMOKE), distributed.open_storage(url, HEARTBEAT, GRACE), GRACE)
    distributed.plan(shared, 0.1)
    shared.optuna_study(expand(shared.study)[0], "tune").ask()
    os._exit(0)


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_retried(storage_url, tmp_path):
    dying = multiprocessing.get_context("fork").Process(target=pop_and_die, args=(storage_url,))
    dying.start()
    dying.join()
    log = tmp_path / "started.jsonl"
    for w in start_stubs(storage_url, log, 2):
        w.join(120)
        assert w.exitcode == 0
    study = load_study(SMOKE)
    assert sorted(tuple(u[:3]) for u in units_started(log)) == sorted(all_slots(study))
    check_store(export(storage_url, tmp_path / "results"), study)


def test_several_local_workers_on_sqlite_are_refused(tmp_path, capsys):
    from harness.__main__ import main

    assert main(["worker", str(SMOKE), "--storage", f"sqlite:///{tmp_path / 'o.db'}", "--processes", "2"]) == 2
    assert "SQLite serves one process only" in capsys.readouterr().err


def test_a_results_directory_takes_runs_from_one_storage_only(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs.jsonl").write_text(json.dumps({"cell": "c", "role": "eval", "seed": 1}) + "\n")
    with pytest.raises(HarnessError, match="use --results"):
        worker.check_storage(Results(results), "journal:///elsewhere.log")


# --- real workers ----------------------------------------------------------------------------

# two cells that unfreeze the top block: long enough runs to be killed in the middle of one
SHRUNK = ["--set", "grid.data_sizes=[32, 64]", "--set", "grid.freeze=[5]"]


def harness_worker(url: str, results: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "harness", "worker", str(SMOKE), *SHRUNK, "--storage", url, "--results",
               str(results), "--heartbeat", "2", "--grace", "6", "--quiet", "--no-report", "--threads", "1"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def running_trial(shared: distributed.Shared, pids: set[int]) -> tuple | None:
    """(cell, role, trial number, pid) of a trial now running in one of ``pids``, if any."""
    for cell in expand(shared.study):
        for role in ("tune", "eval"):
            running = shared.optuna_study(cell, role).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            for t in running:
                owner = distributed.own(t, "worker") or ""
                if owner.startswith(platform.node() + ":") and int(owner.rsplit(":", 1)[1]) in pids:
                    return cell, role, t.number, int(owner.rsplit(":", 1)[1])
    return None


@pytest.mark.slow
def test_three_harness_workers_one_killed_mid_trial_leave_a_complete_store(storage_url, tmp_path):
    results = tmp_path / "results"
    study = load_study(SMOKE, [SHRUNK[i + 1] for i in range(0, len(SHRUNK), 2)])
    workers = {w.pid: w for w in (harness_worker(storage_url, results) for _ in range(3))}
    shared = distributed.Shared(study, distributed.open_storage(storage_url, 2, 6), 6)
    deadline, victim = time.monotonic() + 600, None
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.5)
        victim = running_trial(shared, set(workers))
    assert victim is not None, "no worker ever ran a trial"
    time.sleep(1)  # into the training
    os.kill(victim[3], signal.SIGKILL)
    for pid, w in workers.items():
        out, _ = w.communicate(timeout=900)
        assert w.returncode == (-signal.SIGKILL if pid == victim[3] else 0), out
    records = read_records(results)
    check_store(records, study)
    cell, role, number, pid = victim
    assert not any(r["cell"] == cell.id and r["role"] == role and r["optuna_trial"] == number for r in records)
    trials = shared.optuna_study(cell, role).get_trials(deepcopy=False)
    assert next(t for t in trials if t.number == number).state == optuna.trial.TrialState.FAIL
    assert any(distributed.retry_of(t) == number for t in trials)
    for c in expand(study):  # no unit trained to the end twice: one trial with a result per slot
        for r in ("tune", "eval"):
            finished = [t.user_attrs["slot"] for t in shared.optuna_study(c, r).get_trials(deepcopy=False)
                        if distributed.own(t, "result") is not None]
            assert len(finished) == len(set(finished))
    manifest = json.loads((results / "manifest.json").read_text())
    assert {w["pid"] for w in manifest["workers"]} == set(workers)
    assert "***" in manifest["storage"] or storage_url.startswith("journal")
    report = subprocess.run([sys.executable, "-m", "harness.report", str(results)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert report.returncode == 0, report.stderr


@pytest.mark.slow
def test_a_worker_reuses_the_best_trial_for_an_evaluation_seed_that_also_tuned(tmp_path):
    """The worker's evaluation unit of seed 1 (tune = [1]) is the best trial's record, as in ``harness run``."""
    results = tmp_path / "results"
    command = [sys.executable, "-m", "harness", "worker", str(SMOKE), "--set", "grid.data_sizes=[32]",
               "--set", "grid.freeze=['all']", "--set", "seeds.tune=[1]", "--storage",
               f"journal:///{tmp_path / 'journal.log'}", "--results", str(results), "--quiet", "--no-report"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    records = read_records(results)
    evals = {r["seed"]: r for r in records if r["role"] == "eval"}
    assert sorted(evals) == [1, 2]
    assert evals[2].get("reused_from_trial") is None and evals[2]["test"]["accuracy"] > 0
    trial = next(r for r in records if r["role"] == "tune" and r["trial"] == evals[1]["reused_from_trial"])
    assert trial["seed"] == 1 and trial["params"] == evals[1]["params"] == evals[2]["params"]
    held = {k: v for k, v in trial["held_test"].items() if k != "last"}  # "last": its last epoch's test score
    assert evals[1]["test"] == held and evals[1]["history"] == trial["history"]
    assert evals[1].get("test_last", {}) == trial["held_test"].get("last", {})
