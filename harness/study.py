"""Study files: TOML loaded into frozen dataclasses, validated at load time.

Every section is a dataclass whose fields are the only keys accepted. Types are
checked against the annotations and values by each class's ``check`` method, so
an unknown key, a wrong type or an impossible value fails at load time with one
message naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

ALL = "all"  # freezing depth "all" = every encoder block; data size "all" = whole training pool


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
        n_classes = len(self.thresholds) + 1
        if self.thresholds and self.class_names and len(self.class_names) != n_classes:
            return f"class_names: expected {n_classes} names for {len(self.thresholds)} thresholds"
        if self.max_rows < 0:
            return "max_rows: expected >= 0"
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
class GridSpec:
    """Scientific axes: every combination is one cell."""

    data_sizes: tuple[int | str, ...] = (500,)  # training examples ("all" = whole training pool)
    epochs: tuple[int, ...] = (5,)  # maximum epoch budget; early stopping inside it
    freeze: tuple[int | str, ...] = (ALL,)  # lowest encoder blocks frozen with the embeddings

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
        return None


@dataclass(frozen=True)
class SeedSpec:
    tune: tuple[int, ...] = (0,)  # seeds the Optuna trials train with (validation set only)
    evaluate: tuple[int, ...] = (1, 2, 3)  # seeds the best parameters are run with, then tested

    def check(self, key: str) -> str | None:
        if not self.evaluate:
            return "evaluate: expected at least one seed"
        if len(set(self.evaluate)) != len(self.evaluate):
            return "evaluate: expected distinct seeds"
        return None


@dataclass(frozen=True)
class SearchSpec:
    """Nuisance axes, tuned by Optuna per cell on the validation set."""

    trials: int = 4  # Optuna trials per cell (0 = no tuning: use lr and batch_size below)
    lr: tuple[float, float] = (1e-5, 1e-3)  # log-uniform learning-rate range
    batch_size: tuple[int, ...] = (16, 32)  # categorical choices
    sampler: str = "tpe"  # tpe | random
    pruner: str = "median"  # median | hyperband | none
    fixed_lr: float = 5e-5  # used when trials = 0
    fixed_batch_size: int = 32  # used when trials = 0

    def check(self, key: str) -> str | None:
        if self.trials < 0:
            return "trials: expected >= 0"
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
class Study:
    name: str
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    grid: GridSpec = field(default_factory=GridSpec)
    seeds: SeedSpec = field(default_factory=SeedSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    train: TrainSpec = field(default_factory=TrainSpec)

    def check(self, key: str) -> str | None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            return "name: expected letters, digits, '-', '_' or '.'"
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """sha256 of the resolved study: a results directory belongs to one fingerprint."""
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_study(path: str | Path, overrides: list[str] | None = None) -> Study:
    """Read a study file, apply ``key=value`` overrides, validate, return a frozen Study."""
    path = Path(path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{where}: no such study file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{where}: not a valid TOML file ({exc})") from None
    for item in overrides or []:
        _apply_override(raw, item, where)
    return build(Study, raw, where, "")


def _apply_override(raw: dict, item: str, where: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise HarnessError(f"--set {item!r}: expected key=value, e.g. search.trials=2")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word is a string: --set model.name=distilbert-base-uncased
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise StudyError(where, key, "is not a table")
    node[last] = value


def build(cls: type, raw: Any, where: str, prefix: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, checking keys, types and values."""
    if not isinstance(raw, dict):
        raise StudyError(where, prefix.rstrip(".") or "<top>", "expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise StudyError(where, prefix + key, f"unknown key (expected one of: {', '.join(sorted(names))})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise StudyError(where, prefix + f.name, "missing (required)")
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = build(hint, raw[f.name], where, prefix + f.name + ".")
        else:
            values[f.name] = _coerce(raw[f.name], hint, where, prefix + f.name)
    obj = cls(**values)
    problem = obj.check(prefix)
    if problem:
        key, _, message = problem.partition(": ")
        raise StudyError(where, prefix + key, message)
    return obj


def _coerce(value: Any, hint: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise StudyError(where, key, f"expected a list, got {type(value).__name__} {value!r}")
        item_hint = typing.get_args(hint)[0]
        return tuple(_coerce(v, item_hint, where, key) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        # int | str: an integer, or the one accepted word "all"
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if value == ALL:
            return value
        raise StudyError(where, key, f"expected an integer or \"all\", got {value!r}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise StudyError(where, key, f"expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value
