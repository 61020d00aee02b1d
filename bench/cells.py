"""The cells of the benchmark (see bench/__init__.py) and the one data split both sides use.

Split once: a fixed stratified test set (500 reviews, seed 0); every seed then
draws a stratified training subset of ``data_size`` rows from the remaining
7,500 and cuts 10% of it off as its validation split. Both sides get the very
same row indices; only how they train on them differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data import nested_order, split
from harness.errors import HarnessError
from harness.data import read_table
from harness.study import TrainSpec

# the review file lives outside the repository (it is never copied into it); --data points elsewhere
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon_multidomain_8k.csv"
TEXT, LABEL = "reviewText", "isPositive"
N_CLASSES = 2


@dataclass(frozen=True)
class Cell:
    """One row of the protocol's table. ``trainable_blocks``: encoder blocks left trainable
    at the top (0 = classifier only; "all" = nothing frozen)."""

    name: str
    data_size: int  # rows per seed, its validation split included
    trainable_blocks: int | str
    epochs: int  # maximum; early stopping (patience 3) inside it
    trials: int  # Optuna trials, on the first seed's split
    seeds: int  # evaluation seeds 0..seeds-1, each tested once
    max_length: int = 128  # tokens
    lr: tuple[float, float] = (1e-5, 1e-3)  # log-uniform range searched by both sides
    batch_sizes: tuple[int, ...] = (16, 32)  # categorical choices searched by both sides

    def depth(self, n_blocks: int) -> int:
        """Frozen blocks (the embeddings go with them when > 0) for a model of ``n_blocks``."""
        if self.trainable_blocks == "all":
            return 0
        if not 0 <= self.trainable_blocks <= n_blocks:
            raise HarnessError(f"cell {self.name}: {self.trainable_blocks} trainable blocks, model has {n_blocks}")
        return n_blocks - self.trainable_blocks


# The lr ranges are the bench's choice (the protocol fixes only that both sides share them):
# a classifier on frozen features wants a larger step than fine-tuning the encoder.
CELLS = {
    "head-only": Cell("head-only", 500, 0, epochs=20, trials=4, seeds=3, lr=(1e-4, 1e-2)),
    "top-2": Cell("top-2", 500, 2, epochs=10, trials=2, seeds=2, lr=(2e-5, 5e-4)),
    "full": Cell("full", 500, "all", epochs=3, trials=1, seeds=1, lr=(1e-5, 2e-4)),
}


def parse_cells(text: str) -> list[Cell]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CELLS]
    if unknown or not names:
        raise HarnessError(f"--cells {text!r}: unknown cell {unknown[0] if unknown else '(none)'!r} "
                           f"(expected a comma-separated list of {', '.join(CELLS)})")
    return [CELLS[n] for n in names]


@dataclass(frozen=True)
class SeedSplit:
    train: np.ndarray  # row indices into BenchData.texts
    val: np.ndarray


@dataclass(frozen=True)
class BenchData:
    texts: list[str]
    labels: np.ndarray  # (N,) int64, 0 = negative, 1 = positive
    pool: np.ndarray  # rows the training subsets are drawn from
    test: np.ndarray  # the fixed test set, shared by every cell and both sides

    n_classes = N_CLASSES

    def rows(self, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, validation rows) of ``seed``: what harness.run.execute asks of its data."""
        split_ = self.seed_split(size, seed)
        return split_.train, split_.val

    def seed_split(self, size: int, seed: int) -> SeedSplit:
        """A stratified subset of ``size`` pool rows for ``seed`` and its stratified 10% validation part."""
        if size > len(self.pool):
            raise HarnessError(f"data size {size} is larger than the training pool ({len(self.pool)} rows)")
        subset = self.pool[nested_order(self.labels[self.pool], seed)[:size]]
        train, val, _ = split(self.labels[subset], np.arange(size), 0.1, 0.0, seed)
        return SeedSplit(np.sort(subset[train]), np.sort(subset[val]))

    def rows_touched(self, cell: Cell) -> np.ndarray:
        """Every distinct row the cell reads on either side: all seeds' subsets and the test set."""
        parts = [self.test]
        for seed in range(cell.seeds):
            s = self.seed_split(cell.data_size, seed)
            parts += [s.train, s.val]
        return np.unique(np.concatenate(parts))


def load_data(path: str | Path = DATA, test_size: int = 500, seed: int = 0) -> BenchData:
    frame = read_table(Path(path))
    for column in (TEXT, LABEL):
        if column not in frame.columns:
            raise HarnessError(f"{path}: no column '{column}' (columns: {', '.join(map(str, frame.columns))})")
    frame = frame[frame[TEXT].notna() & frame[TEXT].astype(str).str.strip().ne("")].reset_index(drop=True)
    labels = frame[LABEL].to_numpy().astype(np.int64)
    if not 0 < test_size < len(frame):
        raise HarnessError(f"test size {test_size}: expected between 1 and {len(frame) - 1} rows")
    # one row per group: harness.data.split is then an exact stratified split
    pool, _, test = split(labels, np.arange(len(frame)), 0.0, test_size / len(frame), seed)
    return BenchData(frame[TEXT].astype(str).tolist(), labels, pool, test)


def train_spec() -> TrainSpec:
    """The peer's Trainer defaults, so both sides train the same way: AdamW without weight decay,
    no warmup, linear decay to 0, gradients clipped at norm 1; early stopping on validation
    accuracy with patience 3 (EarlyStoppingCallback(early_stopping_patience=3))."""
    return TrainSpec(optimizer="adamw", weight_decay=0.0, warmup_ratio=0.0, schedule="linear",
                     max_grad_norm=1.0, patience=3, metric="val_accuracy")


@dataclass
class SideResult:
    """What one side did on one cell, in one repetition."""

    seconds: float  # wall time of the whole cell
    test_acc: list[float]  # per evaluation seed
    params: dict  # the best trial's learning rate and batch size
    epochs: list[int] = field(default_factory=list)  # epochs each run trained (trials, then seeds)
