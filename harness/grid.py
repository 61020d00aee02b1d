"""The grid: every combination of the scientific axes is one cell."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from harness.study import Study


@dataclass(frozen=True)
class Cell:
    data_size: int | str  # training examples, or "all"
    epochs: int  # maximum epoch budget
    freeze: int | str  # frozen encoder blocks (with the embeddings), or "all"

    @property
    def id(self) -> str:
        """Stable name used as the Optuna study name and the key in runs.jsonl."""
        return f"n={self.data_size}|ep={self.epochs}|freeze={self.freeze}"


def expand(study: Study) -> list[Cell]:
    """Cells in a fixed order: cheap ones (frozen, small, short) first so a report fills early."""
    grid = study.grid
    frozen_first = sorted(grid.freeze, key=lambda f: float("-inf") if f == "all" else -f)
    sizes = sorted(grid.data_sizes, key=lambda n: float("inf") if n == "all" else n)
    return [
        Cell(data_size=n, epochs=e, freeze=f)
        for f, n, e in itertools.product(frozen_first, sizes, sorted(grid.epochs))
    ]
