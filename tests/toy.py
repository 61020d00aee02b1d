"""Toy-sized stand-ins for the shipped studies' long runs: overrides, a local review CSV, a sandbox."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).parents[1]

# every study at toy size: a few hundred rows, two small data sizes, two epochs, one trial, two seeds
TOY = ["data.max_rows=600", "grid.data_sizes=[60, 120]", "grid.epochs=[2]", "search.trials=1",
       "grid.seeds.tune=[0]", "grid.seeds.evaluate=[1, 2]", "grid.seeds.max_evaluate=3",
       "grid.seeds.budget_minutes=0.1", "model.max_length=32"]


def review_csv(path: Path, rows: int = 600) -> Path:
    """A small review file in the MLU schema (reviewText, isPositive, asin), from the builtin sentences:
    a local file standing in for the MLU CSV behind a URL."""
    from harness.data.sources import read_builtin

    frame = read_builtin("amazon-snippets").head(rows)
    frame = frame.assign(reviewText=frame["text"], isPositive=(frame["score"] > 0).astype(int), asin=frame["review"])
    frame[["reviewText", "isPositive", "asin"]].to_csv(path, index=False)
    return path


def sandbox(directory: Path) -> Path:
    """A folder that looks like the repository's root to make and the harness, with its own results/."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (".venv", "studies", "Makefile", "pyproject.toml", "harness", "bench"):
        (directory / name).symlink_to(ROOT / name)
    return directory


def env(**extra) -> dict:
    return os.environ | {"HF_HUB_OFFLINE": "1", "NO_COLOR": "1"} | extra


def curve_store(directory: Path, sizes=(50, 100, 200, 400, 800, 1600, 3200, 6400), last_flips: float = 0.0) -> Path:
    """The report's fixed store made into one learning curve: its eight cells' evaluation runs relabelled as
    the data sizes `sizes` (epochs 3, classifier only), each run's test predictions redrawn to follow
    accuracy 0.8 - 2 / sqrt(n) (seed sd 0.02, every sentence and review with its own lean), test groups of 12
    sentences. `last_flips`: each run's last-epoch test predictions (test_last, epoch 3) are its restored
    ones with that share of sentences answered the other way; 0 leaves test_last out (an older record)."""
    import json
    import shutil

    import numpy as np

    store = Path(__file__).parent / "fixtures" / "report_store"
    shutil.copytree(store, directory)
    splits = json.loads((store / "splits.json").read_text())
    labels = np.array([int(c) for c in splits["test_labels"]])
    groups = np.arange(len(labels)) // 12
    rng = np.random.default_rng(0)
    lean = rng.uniform(-0.15, 0.15, groups.max() + 1)[groups] + rng.uniform(-0.05, 0.05, len(labels))
    records = [json.loads(line) for line in (store / "runs.jsonl").read_text().splitlines()]
    cells = list(dict.fromkeys(r["cell"] for r in records if r["role"] == "eval"))
    out = []
    for r in records:
        if r["role"] != "eval":
            continue
        n = sizes[cells.index(r["cell"])]
        chance = 0.8 - 2 / np.sqrt(n) + rng.normal(0, 0.02) + lean
        right = rng.random(len(labels)) < chance
        pred = np.where(right, labels, 1 - labels)
        r = r | {"cell": f"n={n}|ep=3|freeze=all", "data_size": n, "epochs": 3, "freeze": "all", "status": "ok",
                 "test": r["test"] | {"pred": "".join(map(str, pred)), "accuracy": float(right.mean())}}
        if last_flips:
            flip = rng.random(len(labels)) < last_flips
            last = np.where(flip, 1 - pred, pred)
            r["test_last"] = {"epoch": 3, "accuracy": float((last == labels).mean()), "loss": 0.5, "f1": 0.5,
                              "pred": "".join(map(str, last))}
        out.append(r)
    (directory / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    (directory / "splits.json").write_text(json.dumps(splits | {"test_groups": [str(g) for g in groups]}))
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["study"]["grid"] |= {"data_sizes": list(sizes), "epochs": [3], "freeze": ["all"]}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory
