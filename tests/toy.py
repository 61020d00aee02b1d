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
