"""End to end: studies/smoke.toml through the real command line, then the store and the report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import load_runs
from harness.store import read_records

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"
# all-MiniLM-L6-v2 (hidden 384): pooler 384*384+384 plus classifier 384*2+2; one block 1,774,464 more
TRAINABLE = {"all": 148_610, 5: 148_610 + 1_774_464}

pytestmark = pytest.mark.slow


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    results = tmp_path_factory.mktemp("smoke") / "results"
    done = harness("run", str(SMOKE), "--results", str(results), "--quiet")
    assert done.returncode == 0, done.stderr
    return results


def test_every_cell_and_seed_is_recorded_once(smoke):
    records = read_records(smoke)
    evals = [(r["cell"], r["seed"]) for r in records if r["role"] == "eval"]
    cells = {f"n={n}|ep=3|freeze={f}" for n in (64, 128) for f in ("all", 5)}
    assert sorted(evals) == sorted((c, s) for c in cells for s in (1, 2))
    tunes = [(r["cell"], r["trial"]) for r in records if r["role"] == "tune"]
    assert len(tunes) == len(set(tunes)) == 2 * len(cells)


def test_records_carry_real_numbers(smoke):
    runs = load_runs(smoke)
    evals = runs[runs["role"] == "eval"]
    splits = json.loads((smoke / "splits.json").read_text())
    majority = max(splits["test_labels"].count(c) for c in "01") / len(splits["test_labels"])
    for r in evals.itertuples():
        assert r.trainable_params == TRAINABLE[r.freeze]
        assert r.train_size == r.data_size and r.test_size == len(splits["test_labels"])
        assert 1 <= r.best_epoch <= r.stopped_epoch <= 3 and len(r.history) == r.stopped_epoch
        assert 0.3 < r.test_accuracy <= 1 and 0 < r.test_f1 <= 1 and r.seconds > 0
        assert len(r.test_pred) == r.test_size
        assert r.params_lr >= 5e-4 and r.params_batch_size in (16, 32)
    # one block fine-tuned on 128 sentences beats always answering the majority class
    unfrozen = evals[(evals["freeze"] == 5) & (evals["data_size"] == 128)]
    assert unfrozen["test_accuracy"].mean() > majority + 0.05
    tune = runs[runs["role"] == "tune"]
    assert tune["test_accuracy"].isna().all() if "test_accuracy" in tune else True  # tuning never tests


def test_manifest_has_provenance(smoke):
    manifest = json.loads((smoke / "manifest.json").read_text())
    assert manifest["study"]["name"] == "smoke" and manifest["study_file"].endswith("smoke.toml")
    assert manifest["packages"]["torch"].startswith("2.13") and manifest["device"].startswith("cpu")
    assert len(manifest["git_commit"]) >= 7


def test_rerun_trains_nothing_new(smoke):
    before = (smoke / "runs.jsonl").read_bytes()
    done = harness("run", str(SMOKE), "--results", str(smoke), "--quiet")
    assert done.returncode == 0, done.stderr
    assert (smoke / "runs.jsonl").read_bytes() == before


def test_interrupted_study_resumes_the_missing_runs(smoke, tmp_path):
    """Drop the last evaluation records (a study stopped early) and rerun: they come back, the same."""
    copy = tmp_path / "results"
    copy.mkdir()
    for name in ("manifest.json", "splits.json", "optuna.db"):
        (copy / name).write_bytes((smoke / name).read_bytes())
    lines = (smoke / "runs.jsonl").read_text().splitlines(keepends=True)
    (copy / "runs.jsonl").write_text("".join(lines[:-2]))
    done = harness("run", str(SMOKE), "--results", str(copy), "--quiet", "--no-report")
    assert done.returncode == 0, done.stderr
    old, new = read_records(smoke), read_records(copy)
    assert len(new) == len(old)
    for a, b in zip(old[-2:], new[-2:]):
        assert (a["cell"], a["seed"]) == (b["cell"], b["seed"])
        assert a["test"] == b["test"] and a["history"] == b["history"]  # CPU: deterministic


def test_report_is_written(smoke):
    done = subprocess.run([sys.executable, "-m", "harness.report", str(smoke)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    text = (smoke / "report.md").read_text()
    assert "n=128 ep=3 freeze=5" in text and "## Answers at a glance" in text


@pytest.mark.parametrize("command", [["-m", "harness", "--help"], ["-m", "harness", "run", "--help"],
                                     ["-m", "harness.report", "--help"]])
def test_help(command):
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage" in done.stdout


def test_replicated_searches_are_recorded_reported_and_resumed(tmp_path):
    """The smoke study with two searches per cell (toy size): every record carries its search, each search
    tunes with its own seeds, the report gives the searches' share of the variance, a rerun trains nothing."""
    from toy import TOY

    results = tmp_path / "results"
    own = ["search.replicates=2", "search.trials=2", "grid.data_sizes=[120, 240]", "grid.epochs=[3]",
           "data.max_rows=900"]
    keep = [o for o in TOY if not o.startswith(("grid.seeds.max_evaluate", "grid.seeds.budget", "search.trials",
                                                 "grid.data_sizes", "grid.epochs", "data.max_rows"))]
    sets = [x for s in keep + own for x in ("--set", s)]
    done = harness("run", str(SMOKE), *sets, "--results", str(results), "--quiet")
    assert done.returncode == 0, done.stderr
    records = read_records(results)
    assert {(r["role"], r["replicate"]) for r in records} == {(role, rep) for role in ("tune", "eval") for rep in (0, 1)}
    tune_seeds = {r["replicate"]: r["tune_seeds"] for r in records if r["role"] == "tune"}
    assert tune_seeds == {0: [0], 1: [100_000]}  # each search its own tuning seed
    evals = sorted((r["cell"], r["replicate"], r["seed"]) for r in records if r["role"] == "eval")
    assert len(evals) == len(set(evals))
    for cell in {r["cell"] for r in records}:  # 4 cells (toy), 2 searches: each evaluated on both seeds, or untuned
        for rep in (0, 1):
            trials = [r for r in records if r["role"] == "tune" and r["cell"] == cell and r["replicate"] == rep]
            found = [s for c, r, s in evals if (c, r) == (cell, rep)]
            if any(r["status"] == "ok" and r["objective"] is not None for r in trials):
                assert found == [1, 2]
            else:  # every trial ended without completing: twice the budget tried, never evaluated, said so
                assert found == [] and len(trials) == 4 and f"{cell}: untuned" in done.stderr
    assert all(r["work"]["train"] > 0 and r["work"]["batches"] >= 1 for r in records if r["status"] == "ok")
    page = (results / "report.md").read_text()
    assert "the searches' luck" in page and "conditional on the hyperparameters" not in page
    answers = (results / "tables" / "answers.csv").read_text().splitlines()[0].split(",")
    cells = (results / "tables" / "cells.csv").read_text().splitlines()[0].split(",")
    assert {"se_search", "search_share"} <= set(answers) and "accuracy_search_share" in cells
    before = (results / "runs.jsonl").read_bytes()
    again = harness("run", str(SMOKE), *sets, "--results", str(results), "--quiet", "--no-report")
    assert again.returncode == 0, again.stderr
    assert (results / "runs.jsonl").read_bytes() == before  # nothing trained again
