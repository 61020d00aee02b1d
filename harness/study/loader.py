"""Reading a study file: TOML into the schema's dataclasses, checking keys, types and values.

An unknown key, a wrong type or an impossible value fails here, at load time, with one
message naming the file and the key (``StudyError``).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.study.schema import ALL, VARIABLE, GridSpec, Study, StudyError


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
    """``key=value`` into the raw table; a grid key applies to every [[grid]] block."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise HarnessError(f"--set {item!r}: expected key=value, e.g. search.trials=2")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word is a string: --set model.name=distilbert-base-uncased
    *parents, last = key.split(".")
    nodes = [raw]
    for part in parents:
        nodes = [n.setdefault(part, {}) for n in nodes]
        nodes = [m for n in nodes for m in (n if isinstance(n, list) else [n])]
        if not all(isinstance(n, dict) for n in nodes):
            raise StudyError(where, key, "is not a table")
    for node in nodes:
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
        values[f.name] = _field(hints[f.name], raw[f.name], where, prefix + f.name)
    obj = cls(**values)
    problem = obj.check(prefix)
    if problem:
        key, _, message = problem.partition(": ")
        raise StudyError(where, prefix + key, message)
    return obj


def _field(hint: Any, value: Any, where: str, key: str) -> Any:
    """One field's value: a nested section, the grid's blocks, its vary table, or a plain value."""
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where, key + ".")
    if hint == tuple[GridSpec, ...]:  # [grid] is one block, [[grid]] a list of them
        blocks = value if isinstance(value, list) else [value]
        if not blocks:
            raise StudyError(where, key, "expected at least one [[grid]] block")
        return tuple(build(GridSpec, b, where, f"{key}[{i}]." if len(blocks) > 1 else key + ".")
                     for i, b in enumerate(blocks))
    if key.endswith("vary"):
        return _vary(value, where, key)
    if key.endswith("fixed"):  # a vary table of single values
        if not isinstance(value, dict):
            raise StudyError(where, key, "expected a table of study keys, e.g. \"train.optimizer\" = \"sgd\"")
        return tuple((n, v[0]) for n, v in _vary({k: [x] for k, x in value.items()}, where, key))
    args = typing.get_args(hint)
    if type(None) in args and any(dataclasses.is_dataclass(a) for a in args):  # an optional section
        return build(next(a for a in args if dataclasses.is_dataclass(a)), value, where, key + ".")
    return _coerce(value, hint, where, key)


def _vary(raw: Any, where: str, key: str) -> tuple[tuple[str, tuple], ...]:
    """``[grid.vary]``: study key -> list of values, each typed like the key it sets (``[grid.fixed]`` too)."""
    if not isinstance(raw, dict):
        raise StudyError(where, key, "expected a table of study keys, e.g. \"train.optimizer\" = [\"sgd\", \"adamw\"]")
    out = []
    for name, values in raw.items():
        section, _, field_name = name.partition(".")
        cls = VARIABLE.get(section)
        if cls is None or field_name not in {f.name for f in dataclasses.fields(cls)}:
            raise StudyError(where, f"{key}.{name}", "expected a model, search or train key such as "
                             "\"train.optimizer\" (data and seeds are shared by every cell; data sizes, "
                             "epochs and freezing are the grid's own axes)")
        if not isinstance(values, list):
            raise StudyError(where, f"{key}.{name}", f"expected a list of values, got {values!r}")
        hint = typing.get_type_hints(cls)[field_name]
        out.append((name, tuple(_coerce(v, hint, where, f"{key}.{name}") for v in values)))
    return tuple(out)


def _coerce(value: Any, hint: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise StudyError(where, key, f"expected a list, got {type(value).__name__} {value!r}")
        item_hint = typing.get_args(hint)[0]
        return tuple(_coerce(v, item_hint, where, key) for v in value)
    if origin in (typing.Union, types.UnionType):
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
