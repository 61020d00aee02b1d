"""The run record: one finished training run (an Optuna trial or an evaluation seed), as stored.

Built in one place (``harness.run.execute``), written as one JSON line by ``harness.store``,
read back by the report. ``schema`` says which version of this layout a line follows;
older lines are brought up to date as they are read. This module also owns the two rules every
reader shares: how per-example results are written as strings of digits, and which statuses keep a
run out of the estimates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from harness.errors import HarnessError

SCHEMA = 2  # 1: axes as top-level data_size/epochs/freeze keys; 2: every axis under "axes"
BUILTIN_AXES = ("data_size", "epochs", "freeze")
DEGENERATE = ("failed", "diverged", "collapsed")  # what training can end in that leaves no usable model
EXCLUDED = DEGENERATE + ("pruned",)  # statuses kept out of every estimate (pruned: a tuning trial stopped early)


@dataclass
class RunRecord:
    study: str
    cell: str  # the cell's id, n=50|ep=4|freeze=all[|...]
    axes: dict[str, Any]  # axis column -> level of this cell
    role: str  # "tune" (an Optuna trial, validation only) or "eval" (an evaluation seed, tested once)
    seed: int
    params: dict[str, Any]  # lr, batch_size
    device: str
    status: str = "ok"  # ok | collapsed | diverged | pruned | failed
    trial: int | None = None  # Optuna trial number (tuning runs)
    freeze_depth: int | None = None  # frozen blocks, "all" resolved for the model
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int | None = None  # the epoch whose weights were restored
    stopped_epoch: int | None = None  # the last epoch trained
    val: dict[str, float] = field(default_factory=dict)  # validation metrics at best_epoch
    test: dict[str, Any] = field(default_factory=dict)  # test metrics, predictions, probabilities
    # the test set scored with the last epoch's weights: epoch, loss, accuracy, f1, pred ({} in older records)
    test_last: dict[str, Any] = field(default_factory=dict)
    # a tuning run's test score, held back from tuning; under "last", its last epoch's (as test_last)
    held_test: dict[str, Any] = field(default_factory=dict)
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    micro_batch: int | None = None  # after any out-of-memory halving
    oom_retries: int = 0
    seconds: float | None = None  # training time of this run
    # one epoch's work, what the cost model prices (harness.stats.cost.run_seconds): optimizer steps
    # ("batches") and millions of parameter-positions through the trained part ("train", "val")
    work: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # failed runs: the reason, and its traceback
    traceback: str | None = None
    objective: float | None = None  # tuning runs: the Optuna objective (mean over tuning seeds)
    retry_of: int | None = None  # tuning runs: the trial this one repeats after a kill
    tune_seeds: list[int] | None = None
    reused_from_trial: int | None = None  # evaluation runs that are a tuning trial (not trained again)
    wave: int = 0  # evaluation runs: the wave that added this seed (0: the study's evaluate seeds; older records)
    replicate: int = 0  # which of the cell's independent searches (0: the first; older records)
    worker: str | None = None  # host:pid of the worker that trained it (shared studies)
    optuna_trial: int | None = None  # the work unit's trial number in shared storage
    finished: str | None = None  # UTC time, ISO 8601
    schema: int = SCHEMA

    @property
    def key(self) -> tuple:
        """What identifies the run in a store: ``record_key`` of its stored form."""
        return record_key({"cell": self.cell, "role": self.role, "seed": self.seed, "trial": self.trial,
                           "replicate": self.replicate})

    @property
    def data_size(self) -> int | str:
        return self.axes["data_size"]

    @property
    def epochs(self) -> int:
        return self.axes["epochs"]

    @property
    def freeze(self) -> int | str:
        return self.axes["freeze"]

    @property
    def restored(self) -> dict:
        """The history row of the epoch whose weights were restored ({} when there is none)."""
        return restored_row(self.history, self.best_epoch)

    @property
    def trained(self) -> bool:
        """False for an evaluation run that is a reused tuning trial: its training counts once, there."""
        return self.reused_from_trial is None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunRecord":
        """A stored line as a record; lines of an older schema are brought up to date."""
        raw = dict(raw)
        version = raw.pop("schema", 1)
        if version > SCHEMA:
            raise HarnessError(f"run record of schema {version}: written by a newer harness (this one reads "
                               f"up to {SCHEMA}); update the harness")
        if version == 1:
            raw["axes"] = {k: raw.pop(k) for k in BUILTIN_AXES if k in raw}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def collapsed(pred: Sequence[int] | np.ndarray | None) -> bool | None:
    """One class predicted for every example (None: no predictions to judge). A run whose restored
    epoch did this on the validation set is ``collapsed``: kept out of the estimates."""
    if pred is None or len(pred) == 0:
        return None
    return len(np.unique(np.asarray(pred))) == 1


def record_key(record: dict) -> tuple:
    """(cell, role, seed) of an evaluation run, (cell, role, trial) of a tuning run; a run of a cell's
    second search or later adds its replicate: (cell, role, seed or trial, replicate). Stores written
    before searches were replicated keep their keys."""
    key = (record["cell"], record["role"], record["seed"] if record["role"] == "eval" else record["trial"])
    return key + (record["replicate"],) if record.get("replicate") else key


def restored_row(history: Sequence[dict], best_epoch: int | None) -> dict:
    """The row of ``history`` for epoch ``best_epoch`` ({} when no row has it)."""
    return next((h for h in history if h.get("epoch") == best_epoch), {})


# --- per-example results as digit strings ----------------------------------------------------
# A run's predictions ('0120': one class per example, so at most 10 classes) and its correctness
# ('0110': 1 = right) are stored as strings of digits, in the order of the split they score.
# These four functions are the only code that writes or reads them.

def encode_classes(pred: Sequence[int] | np.ndarray) -> str:
    """Predicted (or true) classes as one digit per example."""
    pred = np.asarray(pred, dtype=np.int64)
    if pred.size and (pred.min() < 0 or pred.max() > 9):
        raise ValueError("classes are stored as one digit each: 0 to 9")
    return (pred.astype(np.uint8) + ord("0")).tobytes().decode("ascii")


def encode_correct(mask: Sequence[bool] | np.ndarray) -> str:
    """Per-example correctness as '0'/'1' digits."""
    return encode_classes(np.asarray(mask, dtype=bool).astype(np.int64))


def decode_classes(stored: str | Sequence[int]) -> np.ndarray:
    """(N,) int64 class indices from a stored digit string ('0120') or a list of integers."""
    if isinstance(stored, str):
        return np.frombuffer(stored.encode("ascii"), dtype=np.uint8).astype(np.int64) - ord("0")
    return np.asarray(stored, dtype=np.int64)


def decode_correct(stored: str) -> np.ndarray:
    """(N,) bool per-example correctness from a stored '0'/'1' string."""
    return np.frombuffer(stored.encode("ascii"), dtype=np.uint8) == ord("1")
