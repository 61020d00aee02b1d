"""What the report reads: the study rebuilt from its manifest, its axes, the splits and every record.

The report never trains and reads nothing but the results folder (``runs.jsonl``,
``manifest.json``, ``splits.json``). Report-only study keys (``analysis.*``) may be changed
for one report with ``--set``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.stats.proportions import roc_auc, wilson_interval
from harness.study import AnalysisSpec, Axis, Study, axes_of, build, filled, sort_key
from harness.errors import HarnessError
from harness.evidence import run_cost, source_of
from harness.kept import flag, untuned
from harness.records import RunRecord, decode_classes
from harness.store import Results

METRIC_NAMES = {"val_accuracy": "accuracy", "val_f1": "macro-F1", "val_loss": "loss"}


@dataclass(frozen=True)
class Stored:
    results: Results
    manifest: dict
    study: Study
    axes: list[Axis]
    splits: dict
    records: list[RunRecord]  # in grid order; store order within a cell

    @property
    def class_names(self) -> list[str]:
        return self.splits.get("class_names") or list(self.study.data.class_names)

    @property
    def binary(self) -> bool:
        return len(self.class_names) == 2

    @property
    def metric(self) -> str:
        """The study's own metric: early stopping and the Optuna objective."""
        return self.study.train.metric

    @property
    def source(self) -> str:
        return source_of(self.records)

    @property
    def evals(self) -> list[RunRecord]:
        return [r for r in self.records if r.role == "eval"]

    @property
    def analysis(self) -> AnalysisSpec:
        return self.study.analysis


def read_stored(results: Path, overrides: list[str] | None = None) -> Stored:
    store = Results(results)
    if store.manifest() is None:
        raise HarnessError(f"{results}: no manifest.json; expected a study's results directory")
    study = store.study()
    if overrides:
        study = dataclasses.replace(study, analysis=_analysis(study, overrides, str(store.manifest_path)))
    records = store.records()
    if not records:
        raise HarnessError(f"{results}: no runs.jsonl records (run the study first)")
    if not any(r.role == "eval" for r in records):
        failed = untuned(records)
        if failed:
            raise HarnessError(f"{results}: every search so far is untuned (none of its trials completed, e.g. "
                               f"{next(iter(failed))[0]}): no evaluation run, nothing to report")
        raise HarnessError(f"{results}: the store has tuning trials but no evaluation run yet: nothing to report")
    axes = axes_of(study)
    records = sorted(records, key=lambda r: sort_key(axes, filled(axes, r.axes)))  # stable within a cell
    return Stored(store, store.manifest(), study, axes, store.splits(), records)


def _analysis(study: Study, overrides: list[str], where: str) -> AnalysisSpec:
    """The analysis section with ``key=value`` overrides (only analysis keys change a report)."""
    import tomllib

    raw = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(study.analysis).items()}
    for item in overrides:
        key, _, text = item.partition("=")
        if not key.startswith("analysis."):
            raise HarnessError(f"--set {item!r}: a report can change analysis keys only (analysis.smallest_effect, "
                               "analysis.alpha, analysis.forecast_sizes)")
        try:
            raw[key.removeprefix("analysis.")] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            raise HarnessError(f"--set {item!r}: not a TOML value") from None
    return build(AnalysisSpec, raw, f"--set ({where})", "analysis.")



def run_frame(stored: Stored) -> pd.DataFrame:
    """One row per evaluation run: its axes, search, flag (why it is left out: its status, or ``untuned``
    for every run of a cell with an untuned search), metrics with a Wilson interval, measured seconds, the
    cost model's seconds and parameters."""
    labels = stored.splits.get("test_labels" if stored.source == "test" else "val_labels", "")
    failed = {cell for cell, _ in untuned(stored.records)}
    rows = []
    for r in stored.evals:
        row = {"cell": r.cell, **filled(stored.axes, r.axes), "seed": r.seed, "replicate": r.replicate,
               "status": r.status, "flag": "untuned" if r.cell in failed else flag(r),
               "train_size": r.train_size, "best_epoch": r.best_epoch, "stopped_epoch": r.stopped_epoch,
               "trainable_params": r.trainable_params, "seconds": r.seconds, "cost": run_cost(r), "modelled": bool(r.work), "trained": r.trained,
               "lr": r.params.get("lr"), "batch_size": r.params.get("batch_size"), "wave": getattr(r, "wave", 0),
               "val_accuracy": r.val.get("accuracy")}
        rows.append(row | _scores(r, stored.source, labels, stored.binary))
    return pd.DataFrame(rows)


def _scores(record: RunRecord, source: str, labels: str, binary: bool) -> dict:
    """Accuracy, macro-F1, ROC-AUC (binary, test only), loss and Wilson interval of one run."""
    out = {"accuracy": math.nan, "f1": math.nan, "auc": math.nan, "loss": math.nan, "n": 0}
    scores = record.test if source == "test" else record.val
    if scores.get("accuracy") is None:
        return out
    n = record.test_size if source == "test" else record.val_size
    out |= {"accuracy": scores["accuracy"], "f1": scores.get("f1", math.nan), "loss": scores.get("loss", math.nan),
            "n": n or 0}
    if source == "test" and binary and record.test.get("prob") and len(record.test["prob"]) == len(labels):
        out["auc"] = roc_auc(decode_classes(labels), record.test["prob"])
    out["wilson_lo"], out["wilson_hi"] = wilson_interval(round(out["accuracy"] * out["n"]), out["n"])
    return out


def probabilities(record: RunRecord, k: int) -> np.ndarray | None:
    """(N, K) class probabilities of a tested run: stored in full for K > 2, from the positive class for K = 2."""
    if record.test.get("probs"):
        return np.asarray(record.test["probs"], dtype=float)
    if k == 2 and record.test.get("prob"):
        p = np.asarray(record.test["prob"], dtype=float)
        return np.stack([1 - p, p], axis=1)
    return None
