"""A finished study grows into its results folder: a new data size trains only its cells, every stored
run stays as it was, and a change to a stored cell is refused with one line naming the key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from toy import ROOT, env

pytestmark = pytest.mark.slow

# fixed parameters: a 1-trial search on 64 sentences may collapse, be retried and end untuned, which is
# not what this file tests
SMALL = ["data.max_rows=600", "model.max_length=32", "search.trials=0", "grid.epochs=[2]"]


def run(results, sets: list[str], *extra: str) -> subprocess.CompletedProcess:
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run([sys.executable, "-m", "harness", "run", "studies/smoke.toml", *args, "--results",
                           str(results), "--no-report", *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200, env=env())


def test_adding_a_data_size_to_the_finished_smoke_study_trains_only_that_sizes_cells(tmp_path):
    results = tmp_path / "smoke"
    assert run(results, SMALL).returncode == 0
    before = (results / "runs.jsonl").read_bytes()
    assert len(before.splitlines()) == 4 * 2  # 4 cells: 2 evaluation seeds each
    grown = run(results, SMALL + ["grid.data_sizes=[64, 128, 256]"])
    assert grown.returncode == 0, grown.stderr[-3000:]
    after = (results / "runs.jsonl").read_bytes()
    assert after.startswith(before)  # every stored run kept as it was
    new = [json.loads(line) for line in after[len(before):].splitlines()]
    assert len(new) == 2 * 2 and {r["cell"] for r in new} == {"n=256|ep=2|freeze=all", "n=256|ep=2|freeze=5"}
    manifest = json.loads((results / "manifest.json").read_text())
    assert [h["study"]["grid"][0]["data_sizes"] for h in manifest["history"]] == [[64, 128], [64, 128, 256]]
    assert "plan: 6 cells (4 done): 0 tuning trainings and 4 evaluation runs" in grown.stderr

    snapshot = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    refused = run(results, SMALL + ["grid.data_sizes=[64, 128, 256]", "train.patience=3"])
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "cell n=64|ep=2|freeze=all: train.patience was 2, now 3" in lines[0] and "use --results" in lines[0]
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()} == snapshot


def test_a_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    results = tmp_path / "smoke"
    done = run(results, SMALL + ["search.trials=1"], "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not results.exists()
    plan = next(line for line in done.stderr.splitlines() if "plan:" in line)
    assert "plan: 4 cells (0 done): 4 tuning trainings and 8 evaluation runs, at most" in plan
    assert "estimated from a quick measurement on this machine" in plan
    assert sum("tuning trainings, 2 evaluation runs, at most" in line for line in done.stderr.splitlines()) == 4
