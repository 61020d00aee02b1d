"""Progress: rich bars on a terminal, a plain line now and then elsewhere; then a summary table.

On a terminal: the current phase (download, reading, audit, tokenising, the frozen-prefix pass),
the cells of the grid, the runs of the current cell and the epochs of the current run. Off a
terminal (nohup, CI, a notebook, a pipe): a line when a phase or a cell ends, and at most one a
minute in between, each with its counts and the time since the start.
"""

from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

EVERY = 60.0  # seconds between plain progress lines while nothing finishes
QUICK = 1.0  # a phase shorter than this gets no line of its own


class Display:
    """Bars on a terminal, plain lines elsewhere (``plain``; None: decided by the console)."""

    def __init__(self, console: Console | None = None, enabled: bool = True, plain: bool | None = None,
                 every: float = EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console(stderr=True)
        self.plain = enabled and (not self.console.is_terminal if plain is None else plain)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[note]}"), console=self.console,
                                 disable=not enabled or self.plain)
        self.grid = self.cell = self.epochs = self.stage = None
        self.every, self.clock = every, clock
        self.started = self.last_line = clock()
        self.counts = {"cells": 0, "cells_total": 0, "runs": 0, "runs_total": 0, "cell": ""}
        self.phase_name, self.phase_started = "", self.started

    def __enter__(self) -> "Display":
        return self  # the bars start with the first phase: an error while reading the study prints its line alone

    def __exit__(self, exc_type, *exc) -> None:
        if not self.progress.live.is_started:
            return  # stopping bars that never started would print an empty line
        if exc_type is not None:  # the error's line follows: leave no emptied bars above it
            self.progress.live.transient = True
        self.progress.stop()

    def _start(self) -> None:
        if not self.progress.live.is_started and not self.progress.disable:
            self.progress.start()

    def _line(self, text: str) -> None:
        """A plain line with the time since the start."""
        elapsed = int(self.clock() - self.started)
        self.console.print(f"[{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}] {text}",
                           highlight=False, soft_wrap=True)
        self.last_line = self.clock()

    def _due(self) -> bool:
        return self.clock() - self.last_line >= self.every

    # --- phases: download, reading, audit, tokenising, the frozen-prefix pass ----------------

    def phase(self, what: str, done: int, total: int | None) -> None:
        """Progress of a long step before training: ``done`` of ``total`` (None: unknown)."""
        if what != self.phase_name:
            self.end_phase()
            self.phase_name, self.phase_started = what, self.clock()
            if not self.plain:
                self._start()
                self.stage = self.progress.add_task(what, total=total, note="")
        if self.plain:
            if total is not None and done >= total:
                self.end_phase()
            elif self._due():
                self._line(f"{what}: {_count(done, total)} so far")
            return
        self.progress.update(self.stage, completed=done, total=total)

    def end_phase(self) -> None:
        """The current phase is over (the next phase or the first run ends it too)."""
        if not self.phase_name:
            return
        seconds = self.clock() - self.phase_started
        if self.plain and seconds >= QUICK:
            self._line(f"{self.phase_name}: done in {seconds:.1f} s")
        elif self.stage is not None:
            self.progress.remove_task(self.stage)
            self.stage = None
        self.phase_name = ""

    def callback(self, prefix: str) -> Callable[[int, int], None]:
        """``phase`` for a step that reports (done, total) only."""
        return lambda done, total: self.phase(prefix, done, total)

    # --- the grid ------------------------------------------------------------------------------

    def start_grid(self, n_cells: int, done: int) -> None:
        self.end_phase()
        self.counts |= {"cells": done, "cells_total": n_cells}
        if self.plain:
            self._line(f"grid: {n_cells} cells, {done} already done")
            return
        self._start()
        self.grid = self.progress.add_task("grid", total=n_cells, completed=done, note="")

    def start_cell(self, cell_id: str, n_runs: int, done: int) -> None:
        self.end_phase()
        self.counts |= {"runs": done, "runs_total": n_runs, "cell": cell_id}
        if self.plain:
            return
        self._start()
        if self.cell is not None:
            self.progress.remove_task(self.cell)
        self.cell = self.progress.add_task(f"  {cell_id}", total=n_runs, completed=done, note="")

    def start_run(self, label: str, epochs: int) -> None:
        self.end_phase()
        if self.plain:
            return
        if self.epochs is not None:
            self.progress.remove_task(self.epochs)
        self.epochs = self.progress.add_task(f"    {label}", total=epochs, note="")

    def epoch(self, row: dict) -> None:
        if self.plain:
            return
        note = f"val acc {row['val_accuracy']:.3f} loss {row['val_loss']:.3f}"
        self.progress.update(self.epochs, advance=1, note=note)

    def run_done(self, status: str) -> None:
        self.counts["runs"] += 1
        if self.plain:
            if self._due():
                c = self.counts
                self._line(f"{c['cell']}: {c['runs']}/{c['runs_total']} runs (last: {status}); grid "
                           f"{c['cells']}/{c['cells_total']} cells done")
            return
        self.progress.update(self.epochs, note=status)
        self.progress.advance(self.cell)

    def cell_done(self, grid: bool = True) -> None:
        """A cell of the grid (``grid``) or of an added wave is finished."""
        c = self.counts
        if grid:
            c["cells"] += 1
        if self.plain:
            where = f"grid {c['cells']}/{c['cells_total']} cells done" if grid else "wave"
            self._line(f"{c['cell']}: {c['runs']}/{c['runs_total']} runs; {where}")
            return
        if grid:
            self.progress.advance(self.grid)

    def log(self, message: str) -> None:
        if self.plain:
            self._line(message)
            return
        self.progress.console.print(message, highlight=False, soft_wrap=True)

    def summary(self, rows: list[dict], split: str = "test") -> None:
        """One row per cell; ``split`` names where the metrics come from ("test" or "validation")."""
        table = Table(title=f"evaluation runs: {split} metrics, mean over seeds [95% interval, seed and {split}-set "
                            "variance]")
        for name in ("cell", "seeds", f"{split} accuracy", f"{split} macro-F1", "best epoch", "lr", "batch"):
            table.add_column(name, justify="left" if name == "cell" else "right")
        for r in rows:
            table.add_row(r["cell"], str(r["seeds"]), r["accuracy"], r["f1"], r["best_epoch"], r["lr"],
                          r["batch_size"])
        if self.console.is_terminal:
            self.console.print(table)
            return
        # a log file or a pipe: as wide as the table needs, so that no cell name is cut short
        width = self.console.width
        self.console.width = max(width, self.console.measure(table, options=self.console.options.update(
            width=10_000)).maximum)
        try:
            self.console.print(table)
        finally:
            self.console.width = width


def _count(done: int, total: int | None) -> str:
    return f"{done:,}" if total is None else f"{done:,}/{total:,}"
