"""The grid: every combination of a block's axes is one cell; a study's cells are its blocks' union."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError, redact
from harness.study.axes import Axis, axes_of, block_name, cell_id, sort_key
from harness.study.schema import Study, setting, with_values


@dataclass(frozen=True)
class Cell:
    id: str  # n=50|ep=4|freeze=all[|optimizer=sgd...]: the Optuna study name and the key in runs.jsonl
    values: tuple[tuple[str, Any], ...] = field(compare=False)  # (axis column, level) of every axis
    study: Study | None = field(default=None, compare=False, repr=False)  # as this cell runs: varied keys
    # set, its grid's seeds

    def __getitem__(self, column: str) -> Any:
        return dict(self.values)[column]

    @property
    def data_size(self) -> int | str:
        return self["data_size"]

    @property
    def epochs(self) -> int:
        return self["epochs"]

    @property
    def freeze(self) -> int | str:
        return self["freeze"]

    @property
    def varied(self) -> dict[str, Any]:
        """The values of the axes beyond the three built-in ones."""
        return {k: v for k, v in self.values if k not in ("data_size", "epochs", "freeze")}


def expand(study: Study) -> list[Cell]:
    """Every cell of every grid block once, in grid order (cheap ones first so a report fills early).

    A cell named by two blocks runs once; it must then have the same seeds in both.
    """
    axes = axes_of(study)
    cells: dict[str, Cell] = {}
    for i, block in enumerate(study.grid):
        for cell in _block_cells(study, i, axes):
            known = cells.setdefault(cell.id, cell)
            if known.study.seeds != cell.study.seeds:
                raise HarnessError(f"grid: cell {cell.id} is in two grid blocks with different seeds; give it one")
    return sorted(cells.values(), key=lambda c: sort_key(axes, dict(c.values)))


def _block_cells(study: Study, index: int, axes: list[Axis]) -> list[Cell]:
    block = study.grid[index]
    base = study if block.seeds is None else dataclasses.replace(study, seeds=block.seeds)
    base = with_values(base, dict(block.fixed))
    vary = dict(block.vary)
    names = [a.column for a in axes[3:] if a.column != "grid"]
    own = {"grid": block_name(study, index)} if any(a.column == "grid" for a in axes) else {}
    choices = [vary.get(name, (setting(base, name),)) for name in names]
    out = []
    for n, e, f, *rest in itertools.product(block.data_sizes, block.epochs, block.freeze, *choices):
        values = {"data_size": n, "epochs": e, "freeze": f} | own | dict(zip(names, rest))
        out.append(Cell(cell_id(axes, values), tuple(values.items()), with_values(base, dict(zip(names, rest)))))
    return out


def settings(cell: Cell) -> dict[str, Any]:
    """What a cell's runs are: its levels, every model, search and train key as the cell runs, and its
    tuning seeds (its evaluation seeds are its runs, not what they mean)."""
    out: dict[str, Any] = {"data_size": cell.data_size, "epochs": cell.epochs, "freeze": cell.freeze}
    for section in ("model", "search", "train"):
        spec = getattr(cell.study, section)
        out |= {f"{section}.{f.name}": getattr(spec, f.name) for f in dataclasses.fields(spec)}
    return out | {"seeds.tune": cell.study.seeds.tune}


def conflict(old: Study, new: Study) -> str | None:
    """How ``new`` would change the runs stored for ``old``, in words; None when it only adds cells or seeds.

    Shared by every cell: the data keys (labels, split, audit). Per cell: its settings (``settings``)
    wherever the two studies have a cell of the same id. The axes themselves: a new or removed axis
    renames every cell.
    """
    for f in dataclasses.fields(old.data):
        before, after = getattr(old.data, f.name), getattr(new.data, f.name)
        if f.name == "source":  # the manifest keeps it without a password: compare (and show) it so
            before, after = redact(before), redact(after)
        if before != after:
            return f"data.{f.name} was {_shown(before)}, now {_shown(after)}"
    columns = [[a.column for a in axes_of(s)] for s in (old, new)]
    if columns[0] != columns[1]:
        added, removed = [c for c in columns[1] if c not in columns[0]], [c for c in columns[0] if c not in columns[1]]
        change = "; ".join(([f"axis {', '.join(added)} added"] if added else []) +
                           ([f"axis {', '.join(removed)} removed"] if removed else []))
        return f"grid: {change}, which renames every stored cell (a cell's name lists every axis)"
    stored = {cell.id: cell for cell in expand(old)}
    for cell in expand(new):
        if cell.id in stored:
            before, after = settings(stored[cell.id]), settings(cell)
            for key in before:
                if before[key] != after.get(key):
                    return f"cell {cell.id}: {key} was {_shown(before[key])}, now {_shown(after.get(key))}"
    return None


def _shown(value: Any) -> str:
    """A study value as the study file writes it."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else repr(value)
