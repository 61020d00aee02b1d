"""The rich progress display: grid, current run and its epochs, then a summary table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table


class Display:
    """Three bars: cells of the grid, runs of the current cell, epochs of the current run."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[note]}"), console=self.console,
                                 disable=not enabled)
        self.grid = self.cell = self.epochs = None

    def __enter__(self) -> "Display":
        return self  # the bars start with the first run: an error while loading prints its one line alone

    def __exit__(self, exc_type, *exc) -> None:
        if not self.progress.live.is_started:
            return  # stopping bars that never started would print an empty line
        if exc_type is not None:  # the error's line follows: leave no emptied bars above it
            self.progress.live.transient = True
        self.progress.stop()

    def _start(self) -> None:
        if not self.progress.live.is_started:
            self.progress.start()

    def start_grid(self, n_cells: int, done: int) -> None:
        self._start()
        self.grid = self.progress.add_task("grid", total=n_cells, completed=done, note="")

    def start_cell(self, cell_id: str, n_runs: int, done: int) -> None:
        self._start()
        if self.cell is not None:
            self.progress.remove_task(self.cell)
        self.cell = self.progress.add_task(f"  {cell_id}", total=n_runs, completed=done, note="")

    def start_run(self, label: str, epochs: int) -> None:
        if self.epochs is not None:
            self.progress.remove_task(self.epochs)
        self.epochs = self.progress.add_task(f"    {label}", total=epochs, note="")

    def epoch(self, row: dict) -> None:
        note = f"val acc {row['val_accuracy']:.3f} loss {row['val_loss']:.3f}"
        self.progress.update(self.epochs, advance=1, note=note)

    def run_done(self, status: str) -> None:
        self.progress.update(self.epochs, note=status)
        self.progress.advance(self.cell)

    def cell_done(self) -> None:
        self.progress.advance(self.grid)

    def log(self, message: str) -> None:
        self.progress.console.print(message)

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
