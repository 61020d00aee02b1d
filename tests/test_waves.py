"""harness.evidence, harness.waves and the runner's added waves: on simulated stores, then one real study.

The fast tests write records of simulated runs (tests/sim.py) into a results folder, as the
runner would, and plan, train (a stub that looks the run up in the simulated grid) and resume
waves from it; the slow test runs a tiny adaptive study through ``python -m harness run``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import sim
from harness import evidence, waves
from harness.run import runner
from harness.stats import sequential
from harness.run.display import Display
from harness.study import expand, load_study
from harness.records import RunRecord
from harness.store import Results, read_records

ROOT = Path(__file__).parents[1]
STUDY = """name = "w"
[grid]
data_sizes = [50, 150, 500]
epochs = [1]
freeze = ["all", 0]
[seeds]
tune = [0]
evaluate = [1, 2, 3]
max_evaluate = 10
[analysis]
smallest_effect = 0.02
"""
CAP = 12  # seeds simulated per cell (candidates 1..10 use seeds 1-10)
SECONDS = {"all": 1.0, 0: 40.0}  # per run: classifier only, full fine-tuning


def study_of(folder: Path, text: str = STUDY):
    path = folder / "w.toml"
    path.write_text(text)
    return load_study(path)


@pytest.fixture
def study(tmp_path):
    return study_of(tmp_path)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Simulated correctness (C, CAP + 1, N) of every cell of STUDY in expand order (index = seed), labels, groups."""
    spec = study_of(tmp_path_factory.mktemp("study"))
    frame = evidence.cells_frame(expand(spec), spec)
    design = sim.Design(shifts=sim.shifts_for(frame, {"data_size": {150: 0.3, 500: 0.45}, "freeze": {0: 0.36}}),
                        seeds=CAP + 1, sizes=sim.review_sizes(360, 32))
    Y = sim.simulate(design, 1, np.random.default_rng(30))[0]
    labels = "".join(map(str, np.random.default_rng(31).integers(0, 2, Y.shape[2])))
    return Y, labels, design.groups


def record(cell, seed: int, correct: np.ndarray, labels: str, wave: int = 0, **extra) -> RunRecord:
    pred = "".join(lab if ok else str(1 - int(lab)) for lab, ok in zip(labels, correct))
    return RunRecord(study="w", cell=cell.id, axes=dict(cell.values), role="eval", seed=seed,
                     params={"lr": 1e-3, "batch_size": 32}, device="cpu", wave=wave, seconds=SECONDS[cell.freeze],
                     test={"pred": pred, "accuracy": float(correct.mean()), "f1": 0.5}, **extra)


def store(tmp_path, study, grid) -> Results:
    """A results folder holding every cell's first wave."""
    Y, labels, groups = grid
    results = Results(tmp_path / "results")
    results.write_manifest(study, "w.toml", "cpu")
    results.write_splits({"test_labels": labels, "test_groups": [f"r{g}" for g in groups]})
    for c, cell in enumerate(expand(study)):
        for seed in study.seeds.evaluate:
            results.append(record(cell, seed, Y[c, seed], labels))
    return results


# ---------------------------------------------------------------- evidence

def test_evidence_reads_correctness_cost_and_waves(tmp_path, study, grid):
    Y, labels, groups = grid
    results = store(tmp_path, study, grid)
    cells = expand(study)
    results.append(dataclasses.replace(record(cells[0], 4, Y[0, 4], labels, wave=1), status="failed", test={}))
    results.append(record(cells[1], 4, np.ones(len(labels), bool) * 0, "1" * len(labels), wave=1,
                          status="collapsed"))  # judged on validation by the training loop
    results.append(record(cells[2], 4, Y[2, 4], labels, wave=1, reused_from_trial=3))
    found = evidence.from_results(results)
    assert found.Y.shape == (6, 4, 360) and found.seeds.tolist() == [1, 2, 3, 4]
    assert np.array_equal(found.Y[:, :3], Y[:, 1:4].astype(float))  # column s is seed s + 1
    assert np.isnan(found.Y[0:2, 3]).all() and np.array_equal(found.Y[2, 3], Y[2, 4].astype(float))
    assert found.n_runs.tolist() == [4, 4, 4, 3, 3, 3] and found.n_kept.tolist() == [3, 3, 4, 3, 3, 3]
    assert found.cost().tolist() == [SECONDS[c.freeze] for c in cells]  # the reused run trained nothing
    assert found.spent().tolist() == [1.0, 1.0, 0, 0, 0, 0]
    before = found.upto(0)
    assert before.n_runs.tolist() == [3] * 6 and np.isnan(before.Y[:, 3]).all()
    assert len(np.unique(found.groups)) == 32 and found.cells["cell"].tolist() == [c.id for c in cells]


# ---------------------------------------------------------------- waves on a simulated store

def train_plan(results: Results, study, grid, plan: dict, limit: int | None = None) -> int:
    """Store the runs of a plan's seeds that have no record (at most `limit`); how many."""
    Y, labels, _ = grid
    done, stored = results.done(), 0
    for c, cell in enumerate(expand(study)):
        for seed in plan["seeds"].get(cell.id, []):
            if (cell.id, "eval", seed) not in done and (limit is None or stored < limit):
                results.append(record(cell, seed, Y[c, seed], labels, wave=plan["wave"]))
                stored += 1
    return stored


def run_waves(results: Results, study, grid) -> list[dict]:
    cells, a = expand(study), study.analysis
    while True:
        plans = results.manifest().get("waves", [])
        plan = waves.plan_next(evidence.from_results(results), cells, plans, a.alpha, a.smallest_effect)
        results.update_manifest(waves=plans + [plan])
        if plan["stop"]:
            return plans + [plan]
        train_plan(results, study, grid, plan)


def test_waves_add_unused_seeds_within_the_caps_and_stop_saying_why(tmp_path, study, grid):
    results = store(tmp_path, study, grid)
    plans = run_waves(results, study, grid)
    cells = expand(study)
    assert len(plans) >= 2 and plans[-1]["stop"] and not any(p["stop"] for p in plans[:-1])
    for cell in cells:
        seeds = [r.seed for r in results.records() if r.cell == cell.id]
        assert len(seeds) == len(set(seeds)) <= 10 and seeds == sorted(seeds)  # candidates, in order, once
        assert seeds == list(cell.study.seeds.candidates[:len(seeds)])
    json.dumps(plans)  # plain data: the manifest and shared storage hold it
    assert sum(p["look_alpha"] for p in plans) <= study.analysis.alpha + 1e-12
    assert plans[-1]["reason"] in ("every comparison is decided", "the last look was final: it spent all alpha left",
                                   "every cell is at max_evaluate") or "larger test set" in plans[-1]["reason"]
    dear = [sum(len(p["seeds"].get(c.id, [])) for p in plans) for c in cells if c.freeze == 0]
    cheap = [sum(len(p["seeds"].get(c.id, [])) for p in plans) for c in cells if c.freeze == "all"]
    print(f"\nplans: {[p['reason'] for p in plans]}; seeds added: cheap cells {cheap}, dear {dear}")


@pytest.mark.parametrize("minutes", [2, 5])
def test_the_budget_bounds_what_added_waves_spend(tmp_path, grid, minutes):
    spec = study_of(tmp_path, STUDY.replace("max_evaluate = 10\n", f"max_evaluate = 10\nbudget_minutes = {minutes}\n"))
    results = store(tmp_path, spec, grid)
    plans = run_waves(results, spec, grid)
    spent = sum(r.seconds for r in results.records() if r.wave >= 1)
    print(f"\nbudget {minutes} min: {spent:.0f} s spent by {len(plans) - 1} waves; {plans[-1]['reason']}")
    assert 0 < spent <= minutes * 60  # the cost of a run is known here: the plan never overdraws
    assert sum(p["planned_seconds"] for p in plans) == pytest.approx(spent)


def test_a_plan_is_a_function_of_the_stored_runs(tmp_path, study, grid):
    results = store(tmp_path, study, grid)
    found, a = evidence.from_results(results), study.analysis
    first = waves.plan_next(found, expand(study), [], a.alpha, a.smallest_effect)
    again = waves.plan_next(evidence.from_results(results), expand(study), [], a.alpha, a.smallest_effect)
    assert first == again and first["wave"] == 1 and not first["stop"]
    assert first["look_t"] == pytest.approx(18 / 60) and first["look_alpha"] == pytest.approx(
        sequential.spend(0.3, 0.05))


def test_a_study_without_added_seeds_looks_once_at_alpha(tmp_path, grid):
    fixed = study_of(tmp_path, STUDY.replace("max_evaluate = 10\n", ""))
    results = store(tmp_path, fixed, grid)
    assert not waves.adaptive(expand(fixed)) and waves.summary_of(results) is None
    looks, ts = waves.replay(evidence.from_results(results), expand(fixed), [], 0.05)
    assert ts == [1.0] and looks[0].alpha == pytest.approx(0.05)


def test_summary_accounts_for_every_wave(tmp_path, study, grid):
    results = store(tmp_path, study, grid)
    plans = run_waves(results, study, grid)
    a = study.analysis
    summary = waves.summarise(evidence.from_results(results), expand(study), plans, a.alpha, a.smallest_effect)
    table = summary.waves
    assert table["wave"].tolist() == list(range(len(plans)))
    assert table["runs"].sum() == len(results.records())
    for row, plan in zip(table.itertuples(), [None] + plans[:-1]):
        assert row.seeds == (plan["seeds"] if plan else {c.id: [1, 2, 3] for c in expand(study)})
        assert row.seconds == pytest.approx(sum(SECONDS[c.freeze] * len(row.seeds.get(c.id, []))
                                                for c in expand(study)))
    assert table["alpha"].sum() <= a.alpha + 1e-12 and summary.stop == plans[-1]["reason"]
    assert waves.summary_of(results).waves.equals(table)
    assert sum(len(t) for t in summary.verdicts.values()) == len(summary.undecided) + table["decided"].map(len).sum()
    assert (table["undecided"].iloc[-1] == len(summary.undecided))
    if len(summary.undecided):
        assert set(summary.undecided.columns) >= {"comparison", "seeds_per_cell", "more_runs", "seconds"}
    print("\n" + table[["wave", "runs", "seconds", "alpha", "undecided"]].to_string())


# ---------------------------------------------------------------- the runner's waves, with a stub for training

class Stop(Exception):
    pass


def test_the_runner_resumes_a_wave_as_planned(tmp_path, study, grid, monkeypatch):
    """Training stops after two runs of wave 1 (a kill); the rerun trains the rest of that wave, plans the
    next from the same runs, and ends where an uninterrupted run ends."""
    Y, labels, _ = grid
    index = {c.id: i for i, c in enumerate(expand(study))}
    trained = []

    def evaluation(ctx, cell, seed, params, tuned, replicate=0):
        if stop_after is not None and len(trained) >= stop_after:
            raise Stop
        trained.append((cell.id, seed))
        return record(cell, seed, Y[index[cell.id], seed], labels)

    monkeypatch.setattr(runner, "evaluation", evaluation)
    ctx = SimpleNamespace(study=study, cells=expand(study), display=Display(enabled=False))
    reference = store(tmp_path / "a", study, grid)
    stop_after = None
    runner.run_waves(ctx, reference)
    resumed = store(tmp_path / "b", study, grid)
    trained.clear()
    stop_after = 2
    with pytest.raises(Stop):
        runner.run_waves(ctx, resumed)
    assert len(resumed.manifest()["waves"]) == 1 and len(trained) == 2
    stop_after = None
    runner.run_waves(ctx, resumed)
    keys = [r.key for r in resumed.records()]
    assert len(keys) == len(set(keys))
    assert resumed.manifest()["waves"] == reference.manifest()["waves"]
    assert sorted((r.key, r.wave, r.test["pred"]) for r in resumed.records()) == sorted(
        (r.key, r.wave, r.test["pred"]) for r in reference.records())


# ---------------------------------------------------------------- a real study

SETS = ["grid.data_sizes=[64, 128]", 'grid.freeze=["all"]', "grid.epochs=[4]", "search.trials=0",
        "search.fixed_lr=0.005", "seeds.evaluate=[1, 2]", "seeds.max_evaluate=6", "analysis.smallest_effect=0.1",
        "data.max_rows=1200"]


def harness_run(results: Path) -> subprocess.CompletedProcess:
    sets = [x for s in SETS for x in ("--set", s)]
    return subprocess.run([sys.executable, "-m", "harness", "run", str(ROOT / "studies" / "smoke.toml"), *sets,
                           "--results", str(results), "--quiet", "--no-report", "--threads", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_an_adaptive_study_adds_waves_and_resumes_mid_wave(tmp_path):
    """The smoke data, classifier only, 2 seeds then up to 6: waves are planned, stored and trained; a
    store cut in the middle of wave 1 (as a kill leaves it) resumes to the same runs and plans."""
    reference = tmp_path / "reference"
    done = harness_run(reference)
    assert done.returncode == 0, done.stderr
    plans = json.loads((reference / "manifest.json").read_text())["waves"]
    records = read_records(reference)
    added = [r for r in records if r["wave"] >= 1]
    assert added and plans[-1]["stop"] and "wave 1:" in done.stderr
    assert sorted((r["cell"], r["seed"]) for r in added) == sorted(
        (cell, s) for p in plans for cell, seeds in p["seeds"].items() for s in seeds)
    cut = tmp_path / "cut"  # killed after the first run of wave 1: its plan stored, the next not yet
    cut.mkdir()
    (cut / "splits.json").write_bytes((reference / "splits.json").read_bytes())
    manifest = json.loads((reference / "manifest.json").read_text())
    (cut / "manifest.json").write_text(json.dumps(manifest | {"waves": plans[:1]}))
    first = next(i for i, r in enumerate(records) if r["wave"] == 1)
    lines = (reference / "runs.jsonl").read_text().splitlines(keepends=True)
    (cut / "runs.jsonl").write_text("".join(lines[:first + 1]))
    done = harness_run(cut)
    assert done.returncode == 0, done.stderr
    timing = lambda ps: [{k: v for k, v in p.items() if k != "planned_seconds"} for p in ps]  # noqa: E731
    # the same plans; their expected seconds come from runs trained again, so the clock may differ
    assert timing(json.loads((cut / "manifest.json").read_text())["waves"]) == timing(plans)
    again = read_records(cut)
    assert [(r["cell"], r["seed"], r["wave"], r["test"]["pred"]) for r in again] == [
        (r["cell"], r["seed"], r["wave"], r["test"]["pred"]) for r in records]  # CPU: the same runs
