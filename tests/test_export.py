"""From a trained study to the model and back: export, the transformers pipeline, predict; then log and
compare on the same trained store.

One smoke study at toy size (tests/toy.py) is trained once for the module (about half a minute on 2
cores). Export trains a stored run again, checks its predictions, and writes a directory that
``transformers.pipeline`` loads offline and whose test predictions equal the stored ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.data import load_dataset
from harness.kept import kept
from harness.records import decode_classes
from harness.report import build, card
from harness.report.frames import read_stored
from harness.store import Results
from toy import ROOT, TOY, env, review_csv

pytestmark = pytest.mark.slow
SMOKE = ROOT / "studies" / "smoke.toml"


def harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env=env(COLUMNS="200"))


def one_line_error(done: subprocess.CompletedProcess, *parts: str, after_progress: bool = False) -> str:
    """The error is one line, exit status 2; ``after_progress``: progress lines may come before it (a check
    that only training can make)."""
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error: ")]
    assert done.returncode == 2 and len(errors) == 1 and lines[-1] == errors[0], done.stderr
    assert after_progress or len(lines) == 1, done.stderr
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """studies/smoke.toml at toy size, trained once, with its report."""
    results = tmp_path_factory.mktemp("trained") / "smoke"
    done = harness("run", SMOKE, "--results", results, "--quiet", *[a for s in TOY for a in ("--set", s)])
    assert done.returncode == 0, done.stderr
    return results


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model"
    done = harness("export", store, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


def stored_eval(store: Path, cell: str, seed: int) -> dict:
    return next(r for r in Results(store).raw_records() if r["role"] == "eval" and r["cell"] == cell
                and r["seed"] == seed)


def default_choice(store: Path) -> tuple[str, int]:
    """The cell and seed export takes by default: the report's best cell, its first kept seed."""
    stored = read_stored(store)
    cell = card.default_cell(build(stored))
    return cell, min(r.seed for r in stored.evals if r.cell == cell and kept(r))


def pipeline_on_test(directory: Path, store: Path, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(labels, (N, K) probabilities) of transformers' own pipeline on the study's test texts."""
    from transformers import pipeline

    dataset = load_dataset(Results(store).study().data)
    classify = pipeline("text-classification", model=str(directory), device="cpu", **kwargs)
    names = dataset.class_names
    out = classify([dataset.texts[i] for i in dataset.test], top_k=None)
    probs = np.array([[next(s["score"] for s in scores if s["label"] == n) for n in names] for scores in out])
    return probs.argmax(axis=1), probs


def test_export_writes_a_transformers_directory_of_the_default_cell(store, exported):
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= names
    config = json.loads((exported / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert json.loads((exported / "tokenizer_config.json").read_text())["model_max_length"] == 32  # TOY's max_length
    cell, seed = default_choice(store)
    parts = build(read_stored(store))
    text = (exported / "README.md").read_text()
    assert f"cell `{cell}`" in text and f"seed {seed}" in text
    row = parts.summary.set_index("cell").loc[cell]
    assert f"{row['accuracy_mean']:.3f} [{row['accuracy_lo']:.3f}, {row['accuracy_hi']:.3f}]" in text  # the report's
    record = stored_eval(store, cell, seed)
    assert f"{record['test']['accuracy']:.3f}" in text
    for needed in ("Hutto", "Hu, M. & Liu, B. (2004)", "Apache-2.0", "Reimers", "MIT", "sha256",
                   Results(store).manifest()["git_commit"], "truncation=True", f"{record['params']['batch_size']}"):
        assert needed in text, needed


def test_the_pipeline_loads_it_offline_and_predicts_the_stored_test_predictions(store, exported):
    cell, seed = default_choice(store)
    record = stored_eval(store, cell, seed)
    labels, probs = pipeline_on_test(exported, store, truncation=True)
    assert (labels == decode_classes(record["test"]["pred"])).all()
    assert np.abs(probs[:, 1] - np.array(record["test"]["prob"])).max() < 1e-4  # stored to 5 places


def test_a_classifier_only_cell_exports_the_whole_model_too(store, tmp_path):
    """freeze=all trains the head on cached vectors; the directory still reads text end to end."""
    cell = next(r.cell for r in read_stored(store).evals if r.axes["freeze"] == "all" and kept(r))
    seed = min(r.seed for r in read_stored(store).evals if r.cell == cell and kept(r))
    done = harness("export", store, "--out", tmp_path / "head", "--cell", cell, "--seed", seed)
    assert done.returncode == 0, done.stderr
    labels, _ = pipeline_on_test(tmp_path / "head", store, truncation=True)
    assert (labels == decode_classes(stored_eval(store, cell, seed)["test"]["pred"])).all()
    assert "agrees on" in done.stderr


def test_predict_writes_labels_and_probabilities(exported, tmp_path):
    done = harness("predict", exported, "--text", "I love it, works perfectly.", "--text", "Broke after a day. Awful.")
    assert done.returncode == 0, done.stderr
    from io import StringIO

    frame = pd.read_csv(StringIO(done.stdout))
    assert list(frame.columns) == ["text", "label", "prob_negative", "prob_positive"] and len(frame) == 2
    np.testing.assert_allclose(frame["prob_negative"] + frame["prob_positive"], 1.0, atol=1e-6)
    assert (frame["label"] == np.where(frame["prob_positive"] > 0.5, "positive", "negative")).all()
    csv = review_csv(tmp_path / "reviews.csv", rows=40)
    done = harness("predict", exported, "--csv", csv, "--column", "reviewText", "--out", tmp_path / "labels.csv")
    assert done.returncode == 0, done.stderr
    labelled = pd.read_csv(tmp_path / "labels.csv")
    assert list(labelled["row"]) == list(range(40)) and labelled["text"].tolist() == pd.read_csv(csv)["reviewText"].tolist()


@pytest.mark.parametrize("args, parts", [
    (["--cell", "n=999|ep=9|freeze=all"], ["--cell n=999|ep=9|freeze=all: not a cell of", "its cells: "]),
    (["--seed", "77"], ["--seed 77: cell", "has no evaluation run of seed 77 (its seeds: "]),
])
def test_export_refuses_an_unknown_cell_or_seed_before_training(store, tmp_path, args, parts):
    one_line_error(harness("export", store, "--out", tmp_path / "m", *args), *parts)
    assert not (tmp_path / "m").exists()


def test_export_refuses_a_run_it_cannot_reproduce_and_writes_nothing(store, tmp_path):
    """A run trained on a GPU (here: its record says so, and one test prediction differs)."""
    copy = tmp_path / "gpu"
    shutil.copytree(store, copy)
    cell, seed = default_choice(copy)
    lines = (copy / "runs.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        r = json.loads(line)
        if r["role"] == "eval" and r["cell"] == cell and r["seed"] == seed:
            pred = r["test"]["pred"]
            r["test"]["pred"] = ("1" if pred[0] == "0" else "0") + pred[1:]
            r["device"] = "cuda:NVIDIA H100 80GB HBM3"
        out.append(json.dumps(r))
    (copy / "runs.jsonl").write_text("\n".join(out) + "\n")
    line = one_line_error(harness("export", copy, "--out", tmp_path / "m"),
                          "trained again predicts test examples differently from the stored run",
                          "1 of", "trained on cuda:NVIDIA H100 80GB HBM3", "only CPU runs retrain bit for bit",
                          "nothing written", after_progress=True)
    assert "Traceback" not in line
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".m.*"))


def test_export_refuses_a_directory_that_is_not_empty(store, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine\n")
    one_line_error(harness("export", store, "--out", tmp_path / "m"), "--out", "exists and is not an empty directory")
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["keep.txt"]


def test_predict_refuses_a_folder_that_is_no_model_and_a_missing_column(exported, tmp_path):
    one_line_error(harness("predict", tmp_path, "--text", "x"), "no config.json", "harness export")
    csv = review_csv(tmp_path / "r.csv", rows=5)
    one_line_error(harness("predict", exported, "--csv", csv, "--column", "body"),
                   "--column 'body' is not a column", "reviewText")


def test_log_round_trips_every_run_of_the_trained_store(store, tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")
    from mlflow import MlflowClient

    done = harness("log", store, "--to", f"mlflow:{tmp_path / 'mlruns'}")
    assert done.returncode == 0, done.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id], max_results=1000)
    records = Results(store).raw_records()
    assert len(runs) == len(records)
    assert {(r.data.tags["cell"], r.data.tags["role"], r.data.tags["seed"], r.data.tags.get("trial")) for r in runs} \
        == {(r["cell"], r["role"], str(r["seed"]), None if r["trial"] is None else str(r["trial"])) for r in records}


def test_compare_two_trained_smoke_folders(store, tmp_path):
    """A second toy study with a shorter max_length: the same test set, the same cells."""
    other = tmp_path / "short"
    done = harness("run", SMOKE, "--results", other, "--quiet", "--no-report",
                   *[a for s in TOY + ["model.max_length=24"] for a in ("--set", s)])
    assert done.returncode == 0, done.stderr
    done = harness("compare", store, other, "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "cmp" / "compare.md").read_text()
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert text.startswith("## B against A, cell by cell") and len(table) == 4  # the smoke grid's four cells
    assert table["verdict"].notna().all() and (table["lo_sim"] <= table["estimate"]).all()
    a, b = (read_stored(x) for x in (store, other))
    for r in table.itertuples():
        mean = lambda s: np.mean([x.test["accuracy"] for x in s.evals if x.cell == r.cell and kept(x)])  # noqa: E731
        assert r.accuracy_a == pytest.approx(mean(a), abs=1e-9) and r.accuracy_b == pytest.approx(mean(b), abs=1e-9)
    assert os.path.exists(tmp_path / "cmp" / "compare.csv")
