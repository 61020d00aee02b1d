"""The benchmark's machinery (bench/) on a tiny random BERT and a tiny review file.

Both sides run for real (1 trial, 1 seed, 1 epoch, 40 rows), so the test checks the
plumbing and the output format, not the speed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from bench.__main__ import parse, run_cell
from bench.cells import CELLS, Cell, load_data, parse_cells
from bench.report import diff_se, render, write
from harness.errors import HarnessError
from harness.run.modeling import model_path

KEYS = {"cell", "peer_s", "harness_s", "ratio", "peer_test_acc", "harness_test_acc", "test_acc_se", "limit_ratio"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(a review CSV of 80 rows, a directory holding a tiny random BERT with MiniLM's tokenizer)."""
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    words = {0: ["bad", "awful", "broken"], 1: ["great", "good", "love"]}
    filler = ["the", "book", "it", "was", "a", "very", "and", "lid", "disc"]
    rows = [{"reviewText": " ".join(rng.choice(filler + words[y], size=rng.integers(3, 25))), "isPositive": y}
            for y in [0, 1] * 40]
    pd.DataFrame(rows).to_csv(root / "reviews.csv", index=False)
    tokenizer = AutoTokenizer.from_pretrained(model_path("builtin:all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "reviews.csv", str(root / "model")


def test_the_split_is_fixed_stratified_and_shared(tiny):
    data = load_data(tiny[0], test_size=20)
    assert len(data.test) == 20 and data.labels[data.test].mean() == 0.5
    assert not set(data.test) & set(data.pool)
    split = data.seed_split(40, seed=1)
    assert (len(split.train), len(split.val)) == (36, 4)
    assert not set(split.train) & set(split.val) and set(split.train) <= set(data.pool)
    assert np.array_equal(split.train, data.seed_split(40, seed=1).train)  # same rows every call
    cell = Cell("t", 40, 0, epochs=1, trials=1, seeds=2)
    touched = data.rows_touched(cell)
    assert set(data.test) <= set(touched) and set(split.train) <= set(touched)


@pytest.mark.parametrize("text, names", [("head-only", ["head-only"]), ("full,top-2", ["full", "top-2"])])
def test_cells_are_parsed_from_the_table(text, names):
    assert [c.name for c in parse_cells(text)] == names


@pytest.mark.parametrize("text", ["head", "", "full,,nope"])
def test_an_unknown_cell_is_refused_by_name(text):
    with pytest.raises(HarnessError, match="--cells"):
        parse_cells(text)


def test_the_protocol_table():
    assert [(c.data_size, c.epochs, c.trials, c.seeds, c.max_length) for c in CELLS.values()] == [
        (500, 20, 4, 3, 128), (500, 10, 2, 2, 128), (500, 3, 1, 1, 128)]
    assert [c.depth(6) for c in CELLS.values()] == [6, 4, 0]


def test_bad_repeats_fail_at_parse_time():
    with pytest.raises(SystemExit):
        parse(["--repeats", "0"])


def test_the_standard_error_of_a_difference_of_accuracies():
    assert diff_se(0.8, 0.8, 500) == pytest.approx(math.sqrt(2 * 0.16 / 500))
    assert diff_se(1.0, 0.0, 10) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("trainable", [0, "all"])  # head-only (cache and limit) and full (tokens)
def test_both_sides_run_and_the_line_has_the_keys(tiny, tmp_path, trainable):
    data = load_data(tiny[0], test_size=20)
    cell = Cell("head-only" if trainable == 0 else "full", 40, trainable, epochs=1, trials=1, seeds=1,
                max_length=32)
    line = run_cell(cell, data, tiny[1], CPU, repeats=1)
    assert KEYS <= set(line)
    json.loads(json.dumps(line))  # one JSON object
    for key in ("peer_s", "harness_s", "ratio", "test_acc_se") + (("limit_ratio", "limit_s") if trainable == 0 else ()):
        assert math.isfinite(line[key]) and line[key] > 0, key
    for key in ("peer_test_acc", "harness_test_acc"):
        assert 0 <= line[key] <= 1, key
    assert (line["limit_ratio"] is None) == (trainable != 0)
    results = {"cells": [line], "notes": ["a note"], "gpu": None,
               "provenance": {"command": "python -m bench --cells x", "git_commit": "abc", "device": "cpu",
                              "torch_threads": 2, "finished": "now", "load_average_during_run": [3.5]}}
    write(results, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["cells"][0]["cell"] == cell.name
    table = (tmp_path / "RESULTS.md").read_text()
    assert f"| {cell.name} |" in table and "python -m bench --cells x" in table and "shared" in table
    assert table == render(results)


@pytest.mark.slow
def test_the_harness_side_trains_seed_0_once_when_it_tunes_and_evaluates(tiny, monkeypatch):
    """Trials tune on seed 0, which also evaluates: the best trial is seed 0's evaluation run."""
    import bench.ours
    import harness.run.execute

    calls = []
    real = harness.run.execute.train_run  # the harness side trains through the execution core every study uses

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((kwargs["seed"], out.status))
        return out

    monkeypatch.setattr(harness.run.execute, "train_run", counted)
    data = load_data(tiny[0], test_size=20)
    side = bench.ours.run_ours(Cell("c", 40, 0, epochs=2, trials=2, seeds=2, max_length=32), data, tiny[1], CPU)
    trials, evals = calls[:2], calls[2:]
    assert [seed for seed, _ in trials] == [0, 0]
    # two trials, then only seed 1: seed 0's evaluation is the best trial; when no trial finished ok (a
    # collapsed trial is never the best) the fixed parameters are trained on both seeds
    expected = [1] if any(status == "ok" for _, status in trials) else [0, 1]
    assert [seed for seed, _ in evals] == expected
    assert len(side.test_acc) == 2 and len(side.epochs) == 4 and all(0 <= a <= 1 for a in side.test_acc)
