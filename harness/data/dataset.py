"""Labels, the data audit, the fixed validation/test split and the nested stratified training subsets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.data import thresholds as cuts
from harness.data.audit import Progress, audit, skipped
from harness.errors import HarnessError, redact
from harness.records import encode_classes
from harness.data.sources import read_source
from harness.study import ALL, DataSpec

MAX_CLASSES = 10  # predictions and labels are stored as strings of one digit per example


@dataclass(frozen=True)
class Dataset:
    texts: list[str]
    labels: np.ndarray  # (N,) int64 class index
    class_names: list[str]
    train_pool: np.ndarray  # row indices the training subsets are drawn from
    val: np.ndarray  # fixed for every cell of the study
    test: np.ndarray  # fixed for every cell of the study (may be empty)
    dropped_empty: int  # rows dropped for an empty or whitespace-only text
    groups: np.ndarray  # (N,) group id of each row (after the audit merged duplicates into one group)
    source: dict  # {"file": path read, "sha256": its checksum}
    scores: np.ndarray | None = None  # (N,) the score the labels were cut from (None: categorical labels)
    audit: dict | None = None  # what the data audit found and did (harness.data.audit.Findings)
    on_threshold: dict | None = None  # scores exactly on a threshold: how many, and the rule applied
    counts: dict = field(default_factory=dict)  # rows read, dropped (and why) and used
    labelling: dict = field(default_factory=dict)  # which label value (or score range) became which class
    notes: list[str] = field(default_factory=list)  # what a user should know about how the data was read
    pairs: pd.DataFrame | None = None  # every duplicate pair the audit found, rows as in the file

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def rows(self, size: int | str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, validation rows) of a run: the seed's subset, and the study's fixed validation set."""
        return self.subset(size, seed), self.val

    def splits(self) -> dict:
        """What the report needs of the fixed splits: labels, groups and scores of validation and test."""
        part = lambda rows: {"labels": encode_classes(self.labels[rows]),  # noqa: E731
                             "groups": [str(g) for g in self.groups[rows]], "rows": rows.tolist(),
                             "scores": None if self.scores is None else self.scores[rows].tolist()}
        val, test = part(self.val), part(self.test)
        return {"class_names": self.class_names, "train_pool": int(len(self.train_pool)),
                "train_majority": int(np.bincount(self.labels[self.train_pool]).argmax()),
                **{f"val_{k}": v for k, v in val.items()}, **{f"test_{k}": v for k, v in test.items()},
                "dropped_empty": self.dropped_empty, "audit": self.audit, "on_threshold": self.on_threshold,
                "counts": self.counts, "labelling": self.labelling, "notes": self.notes}

    def subset(self, size: int | str, seed: int) -> np.ndarray:
        """Training rows for ``size`` and ``seed``: stratified, and nested across sizes."""
        order = nested_order(self.labels[self.train_pool], seed)
        if size == ALL:
            return self.train_pool[order]
        if size > len(order):
            raise HarnessError(
                f"grid.data_sizes: {size} is larger than the training pool ({len(order)} rows after "
                f"the validation and test split)")
        return self.train_pool[order[:size]]


def load_dataset(spec: DataSpec, progress: Progress | None = None) -> Dataset:
    """The study's rows: read, labelled, audited and split. ``progress(what, done, total)`` hears of
    the long steps (download, reading, the audit)."""
    frame, source = read_source(spec.source, spec.sha256, progress)
    counts = {"read": len(frame)}
    if spec.max_rows and len(frame) > spec.max_rows:
        counts["beyond_max_rows"] = len(frame) - spec.max_rows
        frame = frame.iloc[: spec.max_rows]
    where = f"data.source '{redact(spec.source)}'"
    for key, column in (("text_column", spec.text_column), ("label_column", spec.label_column),
                        ("group_column", spec.group_column)):
        if column and column not in frame.columns:
            raise HarnessError(f"{where}: data.{key} '{column}' is not a column "
                               f"(columns: {', '.join(map(str, frame.columns))})")
    texts = frame[spec.text_column]
    keep = texts.notna() & texts.astype(str).str.strip().ne("")
    dropped = counts["empty_text"] = int((~keep).sum())
    frame = frame[keep.to_numpy()]
    if frame.empty:
        raise HarnessError(f"{where}: column '{spec.text_column}' has no non-empty text")
    labels, names, scores, on_threshold, labelling = encode_labels(frame[spec.label_column], spec, where)
    kept = labels >= 0  # the "drop" rule leaves scores on a threshold out
    counts["on_threshold"] = int((~kept).sum())
    frame, labels, scores = frame[kept], labels[kept], None if scores is None else scores[kept]
    origin = frame.index.to_numpy()  # row of the file (0: the first row after the header)
    texts = frame[spec.text_column].astype(str).tolist()
    groups = frame[spec.group_column].astype(str).to_numpy() if spec.group_column \
        else np.arange(len(frame)).astype(str)
    # before the split: it may merge groups; "off" skips the search
    found = skipped(labels, groups) if spec.dedupe == "off" else audit(texts, labels, groups, policy=spec.dedupe,
                                                                       progress=progress)
    rows = found.keep
    counts["dedupe"] = found.findings.rows_dropped
    counts["used"] = len(rows)
    groups = np.asarray(found.groups).astype(str)
    strata = labels if not spec.split_thresholds else cuts.cut(scores, spec.split_thresholds, spec.on_threshold).labels
    train, val, test = split(strata[rows], groups, spec.val_fraction, spec.test_fraction, spec.split_seed)
    for name, part, fraction in (("val_fraction", val, spec.val_fraction), ("test_fraction", test, spec.test_fraction)):
        if fraction and not len(part):
            raise HarnessError(f"{where}: data.{name} {fraction:g} leaves the split empty: the {len(rows)} rows form "
                               f"{len(np.unique(groups))} group(s) (group column and duplicate texts kept together); "
                               "expected more rows or groups")
    if found.findings.searched:
        found.findings.test_rows_seen_in_training = seen_in(found.component, test, train)
    pairs = _in_file_rows(found.pairs, origin, names)
    return Dataset([texts[i] for i in rows], labels[rows], names, train, val, test, dropped, groups, source,
                   None if scores is None else scores[rows], found.findings.as_dict(), on_threshold, counts,
                   labelling, _notes(counts, labelling), pairs)


def _in_file_rows(pairs: pd.DataFrame, origin: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The audit's pairs with rows numbered as in the file and labels as class names."""
    if pairs.empty:
        return pairs
    out = pairs.copy()
    for side in ("a", "b"):
        out[f"row_{side}"] = origin[out[f"row_{side}"].to_numpy()]
        out[f"label_{side}"] = [names[k] for k in out[f"label_{side}"]]
    return out


def _notes(counts: dict, labelling: dict) -> list[str]:
    """Lines for the console and the report: rows left out and why, and a label order nobody chose."""
    out = []
    why = {"beyond_max_rows": "beyond data.max_rows", "empty_text": "with an empty text",
           "on_threshold": "with a score exactly on a threshold (on_threshold = \"drop\")",
           "dedupe": "dropped as duplicates (dedupe = \"drop\")"}
    left = [f"{counts[k]:,} {text}" for k, text in why.items() if counts.get(k)]
    if left:
        out.append(f"{counts['read']:,} rows read, {counts['used']:,} used: " + "; ".join(left))
    if labelling.get("order") == "sorted" and labelling.get("strings"):
        mapping = ", ".join(f"{c['from']} -> class {c['index']}" for c in labelling["classes"])
        out.append(f"label column '{labelling['column']}': text labels mapped in sorted order ({mapping}); "
                   "set data.class_names to the values in the order you want")
    return out


def seen_in(component: np.ndarray, rows: np.ndarray, pool: np.ndarray) -> list[int]:
    """Positions in ``rows`` whose text (or a near duplicate of it) is also in ``pool``: a leak."""
    return np.flatnonzero(np.isin(component[rows], component[pool])).tolist()


def value_name(value) -> str:
    """A label value as a class name: 1.0 -> "1", 0.5 -> "0.5", "pos" -> "pos"."""
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else f"{float(value):g}"
    return str(value)


def encode_labels(column: pd.Series, spec: DataSpec,
                  where: str) -> tuple[np.ndarray, list[str], np.ndarray | None, dict | None, dict]:
    """(class indices, class names, the scores they were cut from, the scores on a threshold, the mapping).

    A score column cut by thresholds (harness.data.thresholds, with the study's rule for a score
    exactly on one: -1 for rows the "drop" rule leaves out), or the label column's values: in the
    order data.class_names gives them when it names every value, else sorted (numbers by value,
    text alphabetically) and renamed by data.class_names when it has one name per value.
    """
    name = f"label column '{column.name}'"
    if column.isna().any():
        raise HarnessError(f"{where}: {name} has {int(column.isna().sum())} missing values (row "
                           f"{int(column.isna().to_numpy().argmax())})")
    scores, on_threshold = None, None
    mapping = {"column": str(column.name)}
    if spec.thresholds:
        values = pd.to_numeric(column, errors="coerce")
        if values.isna().any():
            bad = column[values.isna()].iloc[0]
            raise HarnessError(f"{where}: {name} must be numeric for data.thresholds, found {bad!r}")
        scores = values.to_numpy(dtype=float)
        result = cuts.cut(scores, spec.thresholds, spec.on_threshold)
        labels = result.labels
        names = list(spec.class_names) or [f"class{i}" for i in range(len(spec.thresholds) + 1)]
        on_threshold = {"rule": result.rule, "counts": list(result.on_threshold),
                        "sentence": cuts.describe(result, spec.thresholds, names)}
        mapping |= {"kind": "thresholds", "order": "thresholds",
                    "classes": [{"index": i, "name": n, "from": r} for i, (n, r) in
                                enumerate(zip(names, cuts.ranges(spec.thresholds, spec.on_threshold)))]}
    else:
        numeric = pd.api.types.is_numeric_dtype(column)
        values = sorted(column.unique(), key=float if numeric else str)
        shown = [value_name(v) for v in values]
        wanted = list(spec.class_names)
        if wanted and len(wanted) != len(values):
            raise HarnessError(f"{where}: data.class_names has {len(wanted)} names but {name} "
                               f"has {len(values)} values {shown[:10]}")
        order = "class_names" if wanted and sorted(wanted) == sorted(shown) else "sorted"
        if order == "class_names":
            values = [values[shown.index(n)] for n in wanted]
            shown = wanted
        labels = column.map({v: i for i, v in enumerate(values)}).to_numpy()
        names = wanted or shown
        mapping |= {"kind": "values", "order": order, "strings": not numeric,
                    "classes": [{"index": i, "name": n, "from": f"value {s!r}" if not numeric else f"value {s}"}
                                for i, (n, s) in enumerate(zip(names, shown))]}
    if len(names) > MAX_CLASSES:
        raise HarnessError(f"{where}: {name} has {len(names)} classes; the harness handles at most {MAX_CLASSES}")
    present = np.bincount(labels[labels >= 0], minlength=len(names))
    if (present > 0).sum() < 2:
        raise HarnessError(f"{where}: {name} has a single class; expected at least two")
    return labels.astype(np.int64), names, scores, on_threshold, mapping


def split(labels: np.ndarray, groups: np.ndarray, val_fraction: float, test_fraction: float,
          seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified group split: whole groups go to one part; each label stratum is cut separately.

    A group's stratum is its most common label; with one row per group this is an
    exact stratified split. Written by hand: no installed library does a stratified
    *group* split with three parts.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"label": labels, "group": groups})
    # a group's stratum: its most common label, the smallest among equals (Series.mode's first value)
    counted = frame.groupby(["group", "label"], sort=True).size().rename("n").reset_index()
    counted = counted.sort_values(["group", "n", "label"], ascending=[True, False, True], kind="stable")
    majority = counted.drop_duplicates("group").set_index("group")["label"]
    sizes = frame.groupby("group", sort=True).size()
    part = []
    for _, members in majority.groupby(majority):
        names = members.index.to_numpy()[rng.permutation(len(members))]
        counts = np.cumsum(sizes[names].to_numpy())
        total = counts[-1]
        where = np.where(counts <= round(test_fraction * total), 2,
                         np.where(counts <= round((test_fraction + val_fraction) * total), 1, 0))
        part.append(pd.Series(where, index=names))
    where = frame["group"].map(pd.concat(part)).to_numpy()
    return tuple(np.flatnonzero(where == k) for k in (0, 1, 2))  # train, val, test


def nested_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation whose every prefix is stratified: the first n rows are the size-n subset.

    Each row gets its rank within its class (random, by ``seed``) divided by the class
    size; sorting by that fraction interleaves the classes in proportion, so a
    prefix of any length holds each class at its share (within one row), and the
    smaller subset is part of the larger one for the same seed.
    """
    rng = np.random.default_rng(seed)
    position = np.empty(len(labels))
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        position[rows[rng.permutation(len(rows))]] = (np.arange(len(rows)) + rng.random()) / len(rows)
    return np.lexsort((rng.random(len(labels)), position))
