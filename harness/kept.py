"""Which runs count: the rule that keeps a run in, or out of, every estimate.

A run is kept unless it failed, diverged (a NaN or infinite loss), was pruned, or collapsed:
its restored epoch predicted one class for every validation example. Collapse is judged on
validation predictions only, never on the test set, since which runs count is a choice.
The statuses are ``harness.records``' (``EXCLUDED``); this module applies them to stored records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.records import (EXCLUDED, RunRecord, collapsed, decode_classes, decode_correct,
                             restored_row)


@dataclass(frozen=True)
class ValidationSet:
    """What the store knows of the validation set, in the order of every ``val_correct`` string."""

    labels: np.ndarray | None = None  # (N,) class indices
    groups: np.ndarray | None = None  # (N,) group (review) of each example; None: all independent
    n_classes: int | None = None

    @classmethod
    def from_splits(cls, splits: dict) -> "ValidationSet":
        """From the store's splits.json: ``val_labels``, ``class_names`` and, once stored, ``val_groups``."""
        labels = decode_classes(splits["val_labels"]) if splits.get("val_labels") else None
        groups = np.asarray(splits["val_groups"]) if splits.get("val_groups") is not None else None
        return cls(labels, groups, len(splits["class_names"]) if splits.get("class_names") else None)


def val_predictions(row: dict, val: ValidationSet | None = None) -> np.ndarray | None:
    """Predicted classes on the validation set at one epoch, or None when the store cannot tell.

    A stored ``val_pred`` is used as it is. Without it a binary task's predictions follow from the
    correctness bits and the labels (right: the label, wrong: the other class); with more classes a
    wrong prediction could be any other class, so they cannot be rebuilt.
    """
    if row.get("val_pred") is not None:
        return decode_classes(row["val_pred"])
    if val is None or val.labels is None or val.n_classes != 2 or not row.get("val_correct"):
        return None
    return np.where(decode_correct(row["val_correct"]), val.labels, 1 - val.labels)


def restored_collapsed(record: dict, val: ValidationSet | None = None) -> bool | None:
    """Whether the restored (best) epoch predicted one class for every validation example."""
    row = restored_row(record.get("history") or [], record.get("best_epoch"))
    return None if "val_accuracy" not in row else collapsed(val_predictions(row, val))


def degenerate(record: dict, val: ValidationSet | None = None) -> str | None:
    """'failed', 'diverged' (NaN/inf loss) or 'collapsed' (one class for every validation example).

    Given ``val`` but no way to know the validation predictions (more than two classes and no
    ``val_pred``), a run is not called collapsed. Without ``val`` and ``val_pred`` the stored status
    is taken as it is (the training loop judges collapse on the restored epoch's validation
    predictions; stores older than that judged it on the test predictions).
    """
    if record.get("status") in ("failed", "diverged"):  # the training loop's own verdicts
        return record["status"]
    losses = [h.get(k) for h in record.get("history") or [] for k in ("train_loss", "val_loss") if k in h]
    if any(v is None or not math.isfinite(v) for v in losses):
        return "diverged"
    judged = restored_collapsed(record, val)
    if judged is None and val is None:
        return "collapsed" if record.get("status") == "collapsed" else None
    return "collapsed" if judged else None


def kept(record: RunRecord) -> bool:
    """Whether an evaluation run enters the estimates."""
    return record.status not in EXCLUDED and degenerate(record.to_dict()) is None


def flag(record: RunRecord) -> str | None:
    """Why a run is kept out of every estimate (its stored status), or None."""
    return record.status if record.status in EXCLUDED else None


def untuned(records: list[RunRecord]) -> dict[tuple[str, int], str]:
    """(cell, replicate) -> why, for every search whose tuning trials all ended without completing
    (collapsed, diverged, failed or pruned): it found no parameters worth evaluating. A cell with an
    untuned search is kept out of the estimates whole; older stores ran such a cell on its fixed
    parameters, which this rule catches too."""
    searches: dict[tuple[str, int], list[RunRecord]] = {}
    for r in records:
        if r.role == "tune":
            searches.setdefault((r.cell, r.replicate), []).append(r)
    return {key: untuned_reason(trials) for key, trials in searches.items()
            if not any(r.status == "ok" and r.objective is not None for r in trials)}


def untuned_reason(trials: list[RunRecord]) -> str:
    """One line: the search, and how its trials ended."""
    counts: dict[str, int] = {}
    for r in trials:
        counts[r.status] = counts.get(r.status, 0) + 1
    replicate = trials[0].replicate if trials else 0
    name = "its search" if replicate == 0 else f"its search {replicate + 1}"
    ended = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return (f"untuned: none of {name}'s {len(trials)} trials completed ({ended}); no evaluation run, and the "
            "cell is kept out of the answers")
