"""What a study is: one frozen dataclass per section of a study file, each with its checks.

Every field is a key the file may give (with its unit and default in a comment); each class's
``check`` says what values it accepts. ``harness.study.loader`` builds these from TOML.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError

ALL = "all"  # freezing depth "all" = every encoder block; data size "all" = whole training pool
REPLICATE_STRIDE = 100_000  # search replicate r tunes with the tuning seeds + r * this (never an evaluation seed)


class StudyError(HarnessError):
    def __init__(self, where: str, key: str, message: str) -> None:
        super().__init__(f"{where}: key '{key}': {message}")


@dataclass(frozen=True)
class DataSpec:
    source: str = "builtin:amazon-snippets"  # builtin:NAME, a local file or an http(s) URL
    sha256: str = ""  # expected checksum of a downloaded or local file ("" = not checked)
    text_column: str = "reviewText"  # AWS MLU review schema
    label_column: str = "isPositive"
    group_column: str = ""  # rows sharing a value never straddle splits ("" = none)
    thresholds: tuple[float, ...] = ()  # numeric label column -> class = number of thresholds below it
    class_names: tuple[str, ...] = ()  # one per class, for reports ("" = the label values)
    max_rows: int = 0  # keep only the first N rows of the file (0 = all)
    val_fraction: float = 0.1  # of all rows, stratified, fixed for every cell
    test_fraction: float = 0.2  # of all rows, stratified, fixed for every cell (0 = no test set)
    split_seed: int = 0  # seed of the validation/test split (not a grid seed)
    # the score cut into the split's strata (() = the labels themselves): a study that labels the same
    # score differently gives the other study's thresholds here and gets its validation and test sentences
    split_thresholds: tuple[float, ...] = ()
    on_threshold: str = "below"  # a score exactly on a threshold: its class is the one below | above | drop
    dedupe: str = "group"  # duplicate texts (exact or near): kept in one split (group) | dropped | off

    def check(self, key: str) -> str | None:
        if not self.source:
            return "source: expected a builtin:NAME, a file path or a URL"
        if not 0 < self.val_fraction < 1:
            return "val_fraction: expected a fraction in (0, 1)"
        if not 0 <= self.test_fraction < 1:
            return "test_fraction: expected a fraction in [0, 1)"
        if self.val_fraction + self.test_fraction >= 0.9:
            return "test_fraction: expected val_fraction + test_fraction < 0.9 so that data is left to train on"
        if list(self.thresholds) != sorted(self.thresholds):
            return "thresholds: expected increasing numbers"
        if self.split_thresholds and not self.thresholds:
            return "split_thresholds: expected only with data.thresholds (labels cut from a score)"
        if list(self.split_thresholds) != sorted(self.split_thresholds):
            return "split_thresholds: expected increasing numbers"
        n_classes = len(self.thresholds) + 1
        if self.thresholds and self.class_names and len(self.class_names) != n_classes:
            return f"class_names: expected {n_classes} names for {len(self.thresholds)} thresholds"
        if self.max_rows < 0:
            return "max_rows: expected >= 0"
        if self.on_threshold not in ("below", "above", "drop"):
            return "on_threshold: expected \"below\", \"above\" or \"drop\""
        if self.dedupe not in ("group", "drop", "off"):
            return "dedupe: expected \"group\", \"drop\" or \"off\""
        return None


@dataclass(frozen=True)
class ModelSpec:
    name: str = "builtin:all-MiniLM-L6-v2"  # Hugging Face id, local directory or builtin:NAME
    max_length: int = 64  # tokens; longer texts are truncated

    def check(self, key: str) -> str | None:
        if not 8 <= self.max_length <= 4096:
            return "max_length: expected an integer in [8, 4096]"
        return None


@dataclass(frozen=True)
class SeedSpec:
    tune: tuple[int, ...] = (0,)  # seeds the Optuna trials train with (validation set only)
    evaluate: tuple[int, ...] = (1, 2, 3)  # seeds the best parameters are run with, then tested: the first wave
    max_evaluate: int = 0  # most evaluation seeds a cell may reach through added waves (0 = len(evaluate): none)
    budget_minutes: float = 0.0  # training minutes the added waves may spend, all their cells together (0 = no
    # limit but max_evaluate); cells whose seeds are the same table share one budget

    def check(self, key: str) -> str | None:
        for name in ("tune", "evaluate"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                return f"{name}: expected distinct seeds"
        if not self.evaluate:
            return "evaluate: expected at least one seed"
        if self.max_evaluate and self.max_evaluate < len(self.evaluate):
            return f"max_evaluate: expected 0 (no added seeds) or at least len(evaluate) = {len(self.evaluate)}"
        if self.adaptive and len(self.evaluate) < 2:
            return ("max_evaluate: adding seeds needs at least 2 seeds in evaluate (the first wave estimates the "
                    "seed variance the next waves are planned from)")
        if self.budget_minutes < 0:
            return "budget_minutes: expected >= 0"
        if self.budget_minutes and not self.adaptive:
            return "budget_minutes: only added waves spend it; expected max_evaluate > len(evaluate)"
        return None

    def tuning(self, replicate: int = 0) -> tuple[int, ...]:
        """The tuning seeds of search replicate ``replicate``: its own subsets, initialisations and data orders."""
        return tuple(s + replicate * REPLICATE_STRIDE for s in self.tune)

    @property
    def cap(self) -> int:
        """The most evaluation seeds a cell may reach."""
        return max(self.max_evaluate, len(self.evaluate))

    @property
    def adaptive(self) -> bool:
        return self.cap > len(self.evaluate)

    @property
    def candidates(self) -> tuple[int, ...]:
        """Every evaluation seed a cell may run, in the order the waves add them: the first wave's, then
        max(tune, evaluate) + 1, + 2, ... (never a tuning seed; the same numbers in every cell, so that the
        cells' added runs stay paired by seed)."""
        top = max((*self.tune, *self.evaluate))
        return self.evaluate + tuple(range(top + 1, top + 1 + self.cap - len(self.evaluate)))


@dataclass(frozen=True)
class GridSpec:
    """Scientific axes: every combination is one cell. A study holds one grid or several."""

    data_sizes: tuple[int | str, ...] = (500,)  # training examples ("all" = whole training pool)
    epochs: tuple[int, ...] = (5,)  # maximum epoch budget; early stopping inside it
    freeze: tuple[int | str, ...] = (ALL,)  # lowest encoder blocks frozen with the embeddings
    # more axes, any model/search/train key: (("train.optimizer", ("sgd", "adamw")), ...)
    vary: tuple[tuple[str, tuple], ...] = ()
    seeds: SeedSpec | None = None  # this grid's own seeds (None: the study's [seeds])
    name: str = ""  # the block's name; with fixed settings its cells carry it (grid=NAME)
    # settings of this block alone, not compared within it: (("train.optimizer", "sgd"), ...)
    fixed: tuple[tuple[str, Any], ...] = ()

    def check(self, key: str) -> str | None:
        for name in ("data_sizes", "epochs", "freeze"):
            values = getattr(self, name)
            if not values:
                return f"{name}: expected at least one value"
            if len(set(values)) != len(values):
                return f"{name}: expected distinct values"
        if any(v != ALL and (not isinstance(v, int) or v < 1) for v in self.data_sizes):
            return "data_sizes: expected positive integers or \"all\""
        if any(e < 1 for e in self.epochs):
            return "epochs: expected positive integers"
        if any(v != ALL and (not isinstance(v, int) or v < 0) for v in self.freeze):
            return "freeze: expected integers >= 0 or \"all\""
        for name, values in self.vary:
            if not values or len(set(map(repr, values))) != len(values):
                return f"vary.{name}: expected a list of distinct values"
        if self.name and not all(c.isalnum() or c in "-_." for c in self.name):
            return "name: expected letters, digits, '-', '_' or '.'"
        if self.fixed and not self.name:
            return "name: a block with [grid.fixed] settings needs a name (its cells carry it)"
        if set(dict(self.fixed)) & set(dict(self.vary)):
            return f"fixed.{sorted(set(dict(self.fixed)) & set(dict(self.vary)))[0]}: both fixed and varied"
        return None


@dataclass(frozen=True)
class SearchSpec:
    """Nuisance axes, tuned by Optuna per cell on the validation set."""

    trials: int = 4  # Optuna trials per cell (0 = no tuning: use lr and batch_size below)
    # a search whose every trial collapsed, diverged or was pruned gets more trials, one at a time, up to
    # this many (0 = twice `trials`); still none complete: the cell is untuned and kept out of the answers
    max_trials: int = 0
    replicates: int = 1  # independent searches per cell (own tuning and sampler seeds), each evaluated on
    # every evaluation seed: with 2 or more, the intervals include the search's luck
    max_replicates: int = 0  # adaptive seeds may add searches up to this many per cell (0 = replicates: none)
    lr: tuple[float, float] = (1e-5, 1e-3)  # log-uniform learning-rate range
    batch_size: tuple[int, ...] = (16, 32)  # categorical choices
    sampler: str = "tpe"  # tpe | random
    pruner: str = "median"  # median | hyperband | none
    fixed_lr: float = 5e-5  # used when trials = 0
    fixed_batch_size: int = 32  # used when trials = 0

    def check(self, key: str) -> str | None:
        if self.trials < 0:
            return "trials: expected >= 0"
        if self.max_trials and self.max_trials < self.trials:
            return f"max_trials: expected 0 (twice trials) or at least trials = {self.trials}"
        if self.replicates < 1:
            return "replicates: expected an integer >= 1 (independent searches per cell)"
        if self.max_replicates and self.max_replicates < self.replicates:
            return f"max_replicates: expected 0 (no added searches) or at least replicates = {self.replicates}"
        if self.replicates > 1 and not self.trials:
            return "replicates: more than one search needs search.trials > 0 (without tuning every search is the same)"
        if len(self.lr) != 2 or not 0 < self.lr[0] <= self.lr[1]:
            return "lr: expected [low, high] with 0 < low <= high"
        if not self.batch_size or any(b < 1 for b in self.batch_size):
            return "batch_size: expected positive integers"
        if self.sampler not in ("tpe", "random"):
            return "sampler: expected \"tpe\" or \"random\""
        if self.pruner not in ("median", "hyperband", "none"):
            return "pruner: expected \"median\", \"hyperband\" or \"none\""
        if self.fixed_lr <= 0:
            return "fixed_lr: expected a learning rate > 0"
        if self.fixed_batch_size < 1:
            return "fixed_batch_size: expected an integer >= 1"
        return None

    @property
    def trial_cap(self) -> int:
        """The most trials a search may run when none of its first `trials` completes."""
        return self.max_trials or 2 * self.trials

    @property
    def replicate_cap(self) -> int:
        """The most searches a cell may reach (added waves included)."""
        return max(self.max_replicates, self.replicates)


@dataclass(frozen=True)
class TrainSpec:
    optimizer: str = "adamw"  # adamw | sgd (the original lab's)
    weight_decay: float = 0.01
    momentum: float = 0.0  # SGD only
    schedule: str = "linear"  # linear (decay to 0) | constant
    warmup_ratio: float = 0.1  # fraction of steps with linear warmup
    max_grad_norm: float = 1.0  # 0 = no clipping
    patience: int = 2  # epochs without improvement before stopping
    min_delta: float = 0.0  # smallest change that counts as an improvement
    metric: str = "val_accuracy"  # val_accuracy | val_f1 | val_loss: early stopping and Optuna objective

    def check(self, key: str) -> str | None:
        if self.optimizer not in ("adamw", "sgd"):
            return "optimizer: expected \"adamw\" or \"sgd\""
        if self.schedule not in ("linear", "constant"):
            return "schedule: expected \"linear\" or \"constant\""
        if not 0 <= self.warmup_ratio < 1:
            return "warmup_ratio: expected a fraction in [0, 1)"
        for name in ("weight_decay", "momentum", "max_grad_norm", "min_delta"):
            if getattr(self, name) < 0:
                return f"{name}: expected >= 0"
        if self.patience < 1:
            return "patience: expected an integer >= 1"
        if self.metric not in ("val_accuracy", "val_f1", "val_loss"):
            return "metric: expected \"val_accuracy\", \"val_f1\" or \"val_loss\""
        return None


@dataclass(frozen=True)
class AnalysisSpec:
    """How the report judges results; changing it never changes a run (not in the fingerprint)."""

    smallest_effect: float = 0.01  # the smallest change in the metric worth calling a difference
    alpha: float = 0.05  # error rate of each family of verdicts
    forecast_sizes: tuple[int | str, ...] = ()  # data sizes to forecast ("all" = whole pool; () = 2x, 4x, all)
    # a study of the same sentences under another labelling (e.g. three classes from the same score),
    # whose results folder sits next to this one's: the report compares the two on the same test sentences
    labelling_study: str = ""

    def check(self, key: str) -> str | None:
        if not 0 < self.smallest_effect < 1:
            return "smallest_effect: expected a number in (0, 1)"
        if not 0 < self.alpha < 0.5:
            return "alpha: expected a number in (0, 0.5)"
        if any(v != ALL and (not isinstance(v, int) or v < 1) for v in self.forecast_sizes):
            return "forecast_sizes: expected positive integers or \"all\""
        if self.labelling_study and not all(c.isalnum() or c in "-_." for c in self.labelling_study):
            return "labelling_study: expected a study name (letters, digits, '-', '_' or '.')"
        return None


# the sections whose keys a grid may vary; data is shared by every cell, seeds have their own table
VARIABLE = {"model": ModelSpec, "search": SearchSpec, "train": TrainSpec}
NOT_RUN = ("description", "analysis")  # keys that change the report only: left out of the fingerprint


@dataclass(frozen=True)
class Study:
    name: str
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    grid: tuple[GridSpec, ...] = (GridSpec(),)  # [grid] is one; [[grid]] several
    seeds: SeedSpec = field(default_factory=SeedSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)

    def check(self, key: str) -> str | None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            return "name: expected letters, digits, '-', '_' or '.'"
        names = [b.name or str(i + 1) for i, b in enumerate(self.grid)]  # as cells carry them (axes.block_name)
        if len(set(names)) != len(names):
            return "grid: expected distinct block names (an unnamed block is named by its position: 1, 2, ...)"
        clash = self._shared_cell()
        if clash:
            return f"grid: cell {clash} is in two grid blocks with different seeds; give it one"
        for i, block in enumerate(self.grid):
            where = "grid" if len(self.grid) == 1 else f"grid[{i}]"
            problem = self._check_vary(block, where) or self._check_seeds(block, where)
            if problem:
                return problem
        return None

    def _shared_cell(self) -> str | None:
        """A cell named by two blocks with different seeds (blocks with settings of their own name
        their cells apart, so only blocks without [grid.fixed] can share one)."""
        if any(b.fixed for b in self.grid):
            return None
        seen: dict[tuple, SeedSpec] = {}
        for block in self.grid:
            seeds = block.seeds or self.seeds
            vary = [tuple((n, v) for v in values) for n, values in block.vary]
            for cell in itertools.product(block.data_sizes, block.epochs, block.freeze, *vary):
                known = seen.setdefault(_cell_key(self, cell), seeds)
                if known != seeds:
                    return "n={}|ep={}|freeze={}".format(*cell[:3])
        return None

    def _check_vary(self, block: GridSpec, where: str) -> str | None:
        settings = [(f"vary.{n}", n, v) for n, values in block.vary for v in values] + \
            [(f"fixed.{n}", n, v) for n, v in block.fixed]
        for key, name, value in settings:
            problem = vary_section(self, name, value).check("")
            if problem:
                return f"{where}.{key}: value {value!r}: {problem.partition(': ')[2]}"
        return None

    def _check_seeds(self, block: GridSpec, where: str) -> str | None:
        seeds = block.seeds or self.seeds
        trials = dict(block.vary).get("search.trials", (dict(block.fixed).get("search.trials", self.search.trials),))
        if any(t > 0 for t in trials) and not seeds.tune:
            return (f"{where + '.seeds' if block.seeds else 'seeds'}.tune: expected at least one seed "
                    "(search.trials > 0 trains Optuna trials with them)")
        return None

    def to_dict(self) -> dict[str, Any]:
        """The study as a TOML-shaped dict: ``build(Study, study.to_dict())`` gives it back."""
        out = dataclasses.asdict(self)
        for block in out["grid"]:
            block["vary"] = {name: values for name, values in block["vary"]}
            block["fixed"] = {name: value for name, value in block["fixed"]}
            if block["seeds"] is None:
                del block["seeds"]
        return _lists(out)

    def fingerprint(self) -> str:
        """sha256 of what decides the runs: the keys that differ from their defaults, less NOT_RUN.

        Keys a later version adds with a default leave the fingerprint of an older study as it was.
        """
        blob = json.dumps({k: v for k, v in delta(self).items() if k not in NOT_RUN}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cell_key(study: "Study", cell: tuple) -> tuple:
    """A cell's identity: its three built-in levels and the value of every varied key (the study's where
    a block does not vary it)."""
    varied = sorted({n for b in study.grid for n, _ in b.vary})
    own = dict(cell[3:])
    return cell[:3] + tuple((n, repr(own[n] if n in own else setting(study, n))) for n in varied)


def setting(study: "Study", name: str) -> Any:
    """The value of a dotted study key, e.g. setting(study, "train.optimizer")."""
    section, _, key = name.partition(".")
    return getattr(getattr(study, section), key)


def _lists(obj: Any) -> Any:
    """Tuples as lists, as TOML and JSON give them back."""
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


def delta(obj: Any) -> Any:
    """A dataclass as a dict of the fields that differ from their defaults (recursively)."""
    if isinstance(obj, tuple) and obj and dataclasses.is_dataclass(obj[0]):
        return [delta(o) for o in obj]
    if not dataclasses.is_dataclass(obj):
        return obj
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING or value != default:
            out[f.name] = delta(value)
    return out


def vary_section(study: Study, name: str, value: Any) -> Any:
    """The section of ``study`` that ``name`` ("train.optimizer") lives in, with ``value`` set."""
    section, _, key = name.partition(".")
    return dataclasses.replace(getattr(study, section), **{key: value})


def with_values(study: Study, values: dict[str, Any]) -> Study:
    """``study`` with the varied keys of one cell set: ``{"train.optimizer": "sgd"}``."""
    for name, value in values.items():
        study = dataclasses.replace(study, **{name.partition(".")[0]: vary_section(study, name, value)})
    return study
