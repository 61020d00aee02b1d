"""The plan of a run, before it starts: how many trainings are left, and about how long they take here.

``plan`` counts, cell by cell and search by search, the tuning trainings (trials times tuning
seeds), the evaluation runs and the most runs added waves (seeds and searches) may train, from
the study and the store. ``measure`` times
the work once per model, length and freezing depth on a few of the study's own texts on this
machine: loading a model, one epoch of training and a forward pass per example, and the
frozen-prefix pass per text. ``estimate`` turns the two into seconds on this machine (it knows
nothing of how the speeds were found); the report's machine-free cost model, which chooses among
tied cells, is harness.stats.cost.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.run.modeling import freeze_, frozen_prefix, load_classifier, tokenize, top_of
from harness.run.packing import Inputs
from harness.run.train import predict, train_run
from harness.study import ALL, Cell

SAMPLE = 64  # texts per timing: a few seconds on a CPU
QUICK = 20  # a run of fewer trainings than this starts without measuring (its plan line has counts only)


@dataclass(frozen=True)
class CellPlan:
    cell: Cell
    depth: int  # frozen blocks
    tune: int  # trainings of tuning trials left (trials x tuning seeds; pruned ones stop early)
    evaluate: int  # evaluation runs left in the first wave (one may turn out to be a tuning trial)
    waves: int  # most evaluation runs added waves may train
    train_rows: int
    val_rows: int
    test_rows: int

    @property
    def kind(self) -> tuple[str, int, int]:
        return self.cell.study.model.name, self.cell.study.model.max_length, self.depth


@dataclass(frozen=True)
class Plan:
    cells: list[CellPlan]
    done: int  # cells with nothing left to train
    prefix: frozenset = frozenset()  # (model, max_length) of the frozen-prefix passes the cells left need
    wave_budget_s: float = float("inf")  # what the added waves may spend in all (budget_minutes)

    @property
    def trainings(self) -> int:
        return sum(c.tune + c.evaluate for c in self.cells)

    @property
    def wave_runs(self) -> int:
        return sum(c.waves for c in self.cells)


@dataclass(frozen=True)
class Speed:
    """Seconds on this machine for one model, max_length and freezing depth."""

    load: float  # building the model for a run
    train: float  # one training example, forward and backward, per epoch
    predict: float  # one example's forward pass (validation each epoch, the test set once)
    prefix: float  # one text through the frozen prefix (0 without one)


@dataclass(frozen=True)
class Estimate:
    first: float  # seconds: tuning and the first wave's evaluation runs
    waves: float  # seconds the added waves may take at most
    prefix: float  # seconds of the frozen-prefix passes
    cells: dict[str, float] = field(default_factory=dict)  # cell id -> seconds of its first-wave trainings


def plan(cells: list[Cell], depths: dict[str, int], data, records: list) -> Plan:
    """What is left to train of ``cells`` (``depths``: frozen blocks per cell id) given the stored ``records``."""
    done_evals = {(r.cell, r.seed, r.replicate) for r in records if r.role == "eval"}
    tuned: dict[tuple[str, int], int] = {}
    for r in records:
        if r.role == "tune":
            tuned[r.cell, r.replicate] = tuned.get((r.cell, r.replicate), 0) + 1
    out, finished, prefix = [], 0, set()
    pool = len(data.train_pool) if hasattr(data, "train_pool") else 0
    for cell in cells:
        seeds, search = cell.study.seeds, cell.study.search
        searches, added = range(search.replicates), range(search.replicates, search.replicate_cap)
        left = lambda r: max(0, search.trials - tuned.get((cell.id, r), 0)) * len(seeds.tune)  # noqa: E731
        tune = sum(left(r) for r in searches) if search.trials else 0
        evaluate = sum((cell.id, s, r) not in done_evals for r in searches for s in seeds.evaluate)
        later = seeds.candidates[len(seeds.evaluate):]
        waves = sum((cell.id, s, r) not in done_evals for r in searches for s in later)
        waves += sum(left(r) + sum((cell.id, s, r) not in done_evals for s in seeds.candidates) for r in added)
        size = pool if cell.data_size == ALL else cell.data_size
        item = CellPlan(cell, depths[cell.id], tune, evaluate, waves, size, len(data.val), len(data.test))
        finished += not (tune or evaluate or waves)
        out.append(item)
        if (tune or evaluate or waves) and item.depth:
            prefix.add(item.kind[:2])
    budgets = {c.study.seeds for c in cells if c.study.seeds.adaptive}
    budget = sum(s.budget_minutes * 60 for s in budgets) if budgets and all(s.budget_minutes for s in budgets) \
        else float("inf")
    return Plan(out, finished, frozenset(prefix), budget)


def run_seconds(cell: CellPlan, speed: Speed, role: str) -> float:
    """One run at most: every epoch of its budget (early stopping only shortens it)."""
    epoch = cell.train_rows * speed.train + cell.val_rows * speed.predict
    return speed.load + cell.cell.epochs * epoch + (cell.test_rows * speed.predict if role == "eval" else 0.0)


def estimate(p: Plan, speeds: dict[tuple[str, int, int], Speed], texts: int) -> Estimate:
    """Seconds the plan takes at most, from the measured ``speeds`` and the ``texts`` each frozen-prefix
    pass encodes. The one cost model of the harness: replace it here."""
    cells = {c.cell.id: c.tune * run_seconds(c, speeds[c.kind], "tune") + c.evaluate * run_seconds(c, speeds[c.kind],
                                                                                                  "eval")
             for c in p.cells if c.tune or c.evaluate}
    waves = sum(c.waves * run_seconds(c, speeds[c.kind], "eval") for c in p.cells if c.waves)
    prefix = sum(texts * max(s.prefix for k, s in speeds.items() if k[:2] == key) for key in p.prefix)
    return Estimate(sum(cells.values()), min(waves, p.wave_budget_s), prefix, cells)


def measure(p: Plan, data, device: torch.device, rows: np.ndarray) -> dict[tuple[str, int, int], Speed]:
    """Each kind of cell left to train, timed on SAMPLE of ``rows`` (the rows the study touches).

    The model is loaded, the frozen prefix computed, the examples predicted and one epoch trained
    as the runs will, on this machine, after a warm-up of a few texts (the first call of a kernel
    pays for more than its work); torch's random state is left as it was. Per example, a sample
    of SAMPLE still carries some of each call's fixed cost: the estimate leans high.
    """
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(rows, size=min(SAMPLE, len(rows)), replace=False))
    kinds = sorted({c.kind for c in p.cells if c.tune or c.evaluate or c.waves}, key=str)
    speeds = {}
    with torch.random.fork_rng():
        for name, length in dict.fromkeys(k[:2] for k in kinds):
            encodings = tokenize(name, data.texts, length, sample)
            load, loaded = _timed(lambda: load_classifier(name, data.n_classes, 0))
            depths = [k[2] for k in kinds if k[:2] == (name, length)]
            predict(loaded, Inputs(encodings, None, device, rows=sample), sample[:4])  # warm-up
            prefix, states = _timed(lambda: frozen_prefix(loaded, encodings, sample, [d for d in depths if d], device,
                                                          batch_size=len(sample))) if any(depths) else (0.0, {})
            for depth in depths:
                model = copy.deepcopy(loaded)
                if depth:
                    freeze_(model, depth)
                    model = top_of(model, depth)
                inputs = Inputs(encodings, states.get(depth), device, rows=sample)
                per_predict = _timed(lambda: predict(model, inputs, sample))[0] / len(sample)
                half = len(sample) // 2
                spec = next(c.cell.study.train for c in p.cells if c.kind == (name, length, depth))
                seconds = _timed(lambda: train_run(model, inputs, data.labels, sample[:half], sample[half:],
                                                   sample[:0], lr=1e-5, batch_size=16, epochs=1, seed=0,
                                                   spec=spec))[0]
                train = max(0.0, seconds - (len(sample) - half) * per_predict) / half
                speeds[(name, length, depth)] = Speed(load, train, per_predict, prefix / len(sample) if depth else 0.0)
    return speeds


def _timed(work) -> tuple[float, object]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    out = work()
    return time.perf_counter() - started, out


def describe(p: Plan, est: Estimate | None, where: str) -> str:
    """The plan in one line, e.g. 'plan: 12 cells (2 done): 8 tuning trainings and 20 evaluation runs
    (estimated at most 3.1 min here), up to 30 more runs in added waves (at most 2.0 min)'."""
    tune, evaluate = sum(c.tune for c in p.cells), sum(c.evaluate for c in p.cells)
    head = f"plan: {len(p.cells)} cells ({p.done} done): {tune} tuning trainings and {evaluate} evaluation runs"
    if est is None:
        return head + (f", up to {p.wave_runs} more runs in added waves" if p.wave_runs else "")
    text = head + f", at most {_time(est.first)}"
    if est.prefix:
        text += f" plus {_time(est.prefix)} for the frozen-prefix pass"
    if p.wave_runs:
        text += f"; up to {p.wave_runs} more runs in added waves, at most {_time(est.waves)}"
    return text + f" (estimated from a quick measurement on this machine, {where}; early stopping shortens runs)"


def _time(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def cell_lines(p: Plan, est: Estimate | None) -> list[str]:
    """One line per cell left to train: its trainings and their time at most (for --dry-run)."""
    out = []
    for c in p.cells:
        if not (c.tune or c.evaluate or c.waves):
            continue
        seconds = f", at most {_time(est.cells[c.cell.id])}" if est and c.cell.id in est.cells else ""
        waves = f", up to {c.waves} in added waves" if c.waves else ""
        out.append(f"  {c.cell.id}: {c.tune} tuning trainings, {c.evaluate} evaluation runs{waves}{seconds}")
    return out
