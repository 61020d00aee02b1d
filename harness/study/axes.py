"""The axes of a study, declared once: what each varies, its order, its name on the page, its question.

Three axes every study has (data size, epoch budget, freezing depth) and any number of
others named in ``[grid.vary]`` (any model, search or train key). The grid, the cell ids,
the stored records, the report's tables, tests, figures and answers all read this table;
adding a kind of axis means adding a row here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.study.schema import ALL, Study


@dataclass(frozen=True)
class Axis:
    column: str  # name in records and tables: "data_size", "epochs", "freeze", or the varied key
    short: str  # name in cell ids and table rows: "n", "ep", "freeze", "optimizer"
    title: str  # name in headings and figure labels
    question: str  # the question the report answers for it
    step: str  # what one step to the next level means ("more training examples")
    plot: str  # how a figure spaces its levels: "log", "linear" or "category"
    levels: tuple  # every level the study runs, in order

    def order(self, value: Any) -> float:
        """Sort key of a level: the grid's order, cheap and most frozen first."""
        if self.column == "data_size":
            return math.inf if value == ALL else float(value)
        if self.column == "epochs":
            return float(value)
        if self.column == "freeze":
            return -math.inf if value == ALL else -float(value)
        return float(self.levels.index(value)) if value in self.levels else math.inf

    def label(self, value: Any) -> str:
        return f"{self.short}={value}"


BUILTIN = {  # column -> (grid key, short, title, question, step, plot)
    "data_size": ("data_sizes", "n", "training examples", "Did more training data help?",
                  "more training examples", "log"),
    "epochs": ("epochs", "ep", "epoch budget", "Did a longer epoch budget help?", "a longer epoch budget", "linear"),
    "freeze": ("freeze", "freeze", "frozen blocks", "Did unfreezing help?",
               "fewer frozen blocks (\"all\" = classifier only)", "category"),
}


def axes_of(study: Study) -> list[Axis]:
    """The study's axes in order: the three built-in ones, then each varied key as first named."""
    out = []
    for column, (key, short, title, question, step, plot) in BUILTIN.items():
        levels = _union(getattr(block, key) for block in study.grid)
        axis = Axis(column, short, title, question, step, plot, ())
        out.append(Axis(column, short, title, question, step, plot, tuple(sorted(levels, key=axis.order))))
    if any(block.fixed for block in study.grid):  # blocks with settings of their own: cells carry the block
        names = tuple(block_name(study, i) for i in range(len(study.grid)))
        out.append(Axis("grid", "grid", "grid block", "Did the grid blocks' own settings matter?",
                        "the next grid block's settings", "category", names))
    varied = {}
    for block in study.grid:
        for name, values in block.vary:
            varied.setdefault(name, []).extend(v for v in values if v not in varied.get(name, []))
    shorts = [name.rpartition(".")[2] for name in varied]
    for name, short in zip(varied, shorts):
        short = short if shorts.count(short) == 1 and short not in ("n", "ep", "freeze", "grid") else name
        out.append(Axis(name, short, name, f"Did {name} matter?", f"the next value of {name}", "category",
                        tuple(varied[name])))
    return out


def block_name(study: Study, index: int) -> str:
    """A grid block's name in cell ids: its own, else its position (1, 2, ...)."""
    return study.grid[index].name or str(index + 1)


def _union(lists) -> list:
    seen = []
    for values in lists:
        seen += [v for v in values if v not in seen]
    return seen


def sort_key(axes: list[Axis], values: dict[str, Any]) -> tuple:
    """Grid order of a cell: frozen first, then small, then short, then the varied keys."""
    first = [a for a in axes if a.column == "freeze"] + [a for a in axes if a.column != "freeze"]
    return tuple(a.order(values[a.column]) for a in first)


def filled(axes: list[Axis], values: dict[str, Any]) -> dict[str, Any]:
    """A cell's level of every axis; an axis that ``values`` lacks (a record older than the axis) takes
    its first level."""
    return {a.column: values.get(a.column, a.levels[0] if a.levels else None) for a in axes}


def cell_id(axes: list[Axis], values: dict[str, Any]) -> str:
    """Stable name of a cell, the Optuna study name and the key in runs.jsonl: ``n=50|ep=4|freeze=all``."""
    return "|".join(a.label(values[a.column]) for a in axes)
