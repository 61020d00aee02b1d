"""Every shipped study, end to end at toy size, through the real command line and the report.

The hub model and the MLU CSV behind a URL are replaced by the builtin model and a small local
review file; the lab replayed (mlu_lab5: one cell, one seed, no test set) included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.study import load_study
from toy import ROOT, TOY, env, review_csv

STUDIES = sorted((ROOT / "studies").glob("*.toml"))
LOCAL = ["model.name=builtin:all-MiniLM-L6-v2"]  # stands in for a hub model
SHRINK = {  # beyond TOY, what a study needs to stay small (or to keep its point)
    "mlu_lab5": ["grid.data_sizes=[\"all\"]", "search.trials=0", "data.max_rows=300"],
    "mlu_ablation": ["grid.freeze=[\"all\", 4, 0]"],
    "forecast_check": ["search.trials=0"],  # SGD on 60 sentences for 2 epochs: every tuning trial collapses
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    return review_csv(tmp_path_factory.mktemp("data") / "reviews.csv")


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_shipped_study_runs_through_the_report(path, reviews, tmp_path):
    study = load_study(path)
    sets = TOY + SHRINK.get(path.stem, [])
    if not study.data.source.startswith("builtin:"):
        sets += LOCAL + [f"data.source={reviews}"]
    results = tmp_path / path.stem
    args = [a for s in sets for a in ("--set", s)]
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(path), *args, "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    text = (results / "report.md").read_text()
    assert "## Answers at a glance" in text and "## 1. Cells" in text and "## Provenance" in text
    if path.stem == "mlu_lab5":  # the lab replayed: validation numbers only, and said so
        assert "validation set (no test set" in text
        assert "validation accuracy" in done.stderr
    if path.stem == "optimizer":  # an axis no code names, treated like the built-in ones
        assert "**Did train.optimizer matter?**" in text and "optimizer sgd → adamw" in text
