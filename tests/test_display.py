"""Progress off a terminal: a line when a phase or a cell ends, at most one a minute in between."""

from __future__ import annotations

import io

from rich.console import Console

from harness.run.display import Display


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain() -> tuple[Display, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, force_terminal=False, width=200)
    return Display(console, clock=clock), out, clock


def test_off_a_terminal_phases_and_cells_print_plain_lines_with_counts_and_time():
    display, out, clock = plain()
    assert display.plain
    for done in range(0, 100_001, 10_000):  # a long phase: a line a minute, then its end
        clock.now += 15
        display.phase("audit: MinHash", done, 100_000)
    display.start_grid(3, 1)
    display.start_cell("n=50|ep=4|freeze=all", 7, 0)
    for _ in range(7):
        display.start_run("eval seed 1", 4)
        display.epoch({"val_accuracy": 0.8, "val_loss": 0.4})
        clock.now += 5
        display.run_done("ok")
    display.cell_done()
    lines = out.getvalue().splitlines()
    assert lines == ["[0:01:00] audit: MinHash: 30,000/100,000 so far",
                     "[0:02:00] audit: MinHash: 70,000/100,000 so far",
                     "[0:02:45] audit: MinHash: done in 150.0 s",
                     "[0:02:45] grid: 3 cells, 1 already done",
                     "[0:03:20] n=50|ep=4|freeze=all: 7/7 runs; grid 2/3 cells done"]


def test_a_quick_phase_prints_nothing_and_a_slow_cell_a_line_a_minute():
    display, out, clock = plain()
    display.phase("reading reviews.csv", 10, 100)
    clock.now += 0.2
    display.phase("reading reviews.csv", 100, 100)
    display.start_grid(1, 0)
    display.start_cell("n=50|ep=4|freeze=0", 2, 0)
    clock.now += 61
    display.run_done("ok")
    assert out.getvalue().splitlines() == ["[0:00:00] grid: 1 cells, 0 already done",
                                           "[0:01:01] n=50|ep=4|freeze=0: 1/2 runs (last: ok); grid 0/1 cells done"]


def test_on_a_terminal_the_bars_carry_the_phase():
    out = io.StringIO()
    display = Display(Console(file=out, force_terminal=True, width=120))
    assert not display.plain
    display.phase("tokenising", 5, 10)
    assert display.progress.tasks[-1].description == "tokenising" and display.progress.tasks[-1].completed == 5
    display.end_phase()
    assert not display.progress.tasks
    display.progress.stop()
