"""The report's data: what it reads from the store and the per-run and per-cell frames built from it.

Reads ``runs.jsonl``, ``manifest.json`` and ``splits.json`` and never trains. One row
per evaluation run with its metrics and Wilson interval, then one row per cell with
the mean, sd and t-interval over seeds; ``Tables`` holds every frame the page prints.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness import diagnostics, stats
from harness.errors import HarnessError
from harness.report_format import label
from harness.store import Results

AXES = ["data_size", "epochs", "freeze"]
SPLITS = "splits.json"
ORDER = {  # the grid's own order: more data, more epochs, fewer frozen blocks to the right
    "data_size": lambda v: math.inf if v == "all" else float(v),
    "epochs": float,
    "freeze": lambda v: -math.inf if v == "all" else -float(v),
}


@dataclass(frozen=True)
class Stored:
    """What the report reads: the manifest, the fixed splits and every record."""

    manifest: dict
    splits: dict
    records: list[dict]

    @property
    def class_names(self) -> list[str]:
        return self.splits.get("class_names") or self.manifest["study"]["data"].get("class_names") or []

    @property
    def metric(self) -> str:
        return self.manifest["study"].get("train", {}).get("metric", "val_accuracy")


def read_stored(results: Path) -> Stored:
    store = Results(results)
    if store.manifest() is None:
        raise HarnessError(f"{results}: no manifest.json; expected a study's results directory")
    records = [{k: v for k, v in r.to_dict().items() if k != "axes"} | r.axes for r in store.records()]
    if not records:
        raise HarnessError(f"{results}: no runs.jsonl records (run the study first)")
    records = sorted(records, key=cell_key)  # stable: store order within a cell
    return Stored(store.manifest(), store.splits(), records)


def cell_key(row) -> tuple:
    return tuple(ORDER[a](row[a]) for a in ("freeze", "data_size", "epochs"))


def source(stored: Stored) -> str:
    """'test' when evaluation runs were tested; otherwise 'val' (the metric at the restored epoch)."""
    return "test" if any((r.get("test") or {}).get("accuracy") is not None
                         for r in stored.records if r["role"] == "eval") else "val"


def eval_frame(stored: Stored) -> pd.DataFrame:
    """One row per evaluation run: its flag, metrics with Wilson interval, cost and chosen parameters."""
    src, binary = source(stored), len(stored.class_names) == 2
    labels = stored.splits.get("test_labels", "")
    if not any(r["role"] == "eval" for r in stored.records):
        raise HarnessError("the store has tuning trials but no evaluation run yet: nothing to report")
    rows = []
    for r in (r for r in stored.records if r["role"] == "eval"):
        row = {a: r[a] for a in ("cell", *AXES, "freeze_depth", "seed", "status")} | {
            "flag": diagnostics.degenerate(r), "train_size": r.get("train_size"), "best_epoch": r.get("best_epoch"),
            "stopped_epoch": r.get("stopped_epoch"), "trainable_params": r.get("trainable_params"),
            "seconds": r.get("seconds"), "lr": r["params"].get("lr"), "batch_size": r["params"].get("batch_size")}
        row |= _scores(r, src, labels, binary)
        rows.append(row)
    return pd.DataFrame(rows)


def _scores(record: dict, src: str, labels: str, binary: bool) -> dict:
    """Accuracy, F1, ROC-AUC (binary), per-example correctness and Wilson interval of one run."""
    out = {"accuracy": math.nan, "f1": math.nan, "auc": math.nan, "n": 0, "correct": None}
    if src == "test":
        test = record.get("test") or {}
        if test.get("accuracy") is None:
            return out
        pred = test.get("pred", "")
        out |= {"accuracy": test["accuracy"], "f1": test["f1"], "n": record.get("test_size") or len(pred)}
        if pred and len(pred) == len(labels):
            out["correct"] = np.frombuffer(pred.encode(), np.uint8) == np.frombuffer(labels.encode(), np.uint8)
            if binary and test.get("prob"):
                out["auc"] = stats.roc_auc([int(c) for c in labels], test["prob"])
    else:
        val = record.get("val") or {}
        if val.get("accuracy") is None:
            return out
        best = next((h for h in record.get("history") or [] if h["epoch"] == record.get("best_epoch")), {})
        out |= {"accuracy": val["accuracy"], "f1": val.get("f1", math.nan), "n": record.get("val_size") or 0}
        if best.get("val_correct"):
            out["correct"] = stats.bits(best["val_correct"])
    out["wilson_lo"], out["wilson_hi"] = stats.wilson_interval(round(out["accuracy"] * out["n"]), out["n"])
    return out


def trained(records: list[dict]) -> list[dict]:
    """The records that trained: an evaluation run reused from its trial trained once, as the trial."""
    return [r for r in records if r.get("reused_from_trial") is None]


def summary_table(evals: pd.DataFrame, stored: Stored) -> pd.DataFrame:
    """Per cell: seeds kept and flagged, mean, sd and 95% t-interval of each metric, cost, parameters."""
    seconds = pd.DataFrame([{"cell": r["cell"], "seconds": r.get("seconds") or 0.0}
                            for r in trained(stored.records)])
    total = seconds.groupby("cell")["seconds"].sum()
    rows = []
    for cell, group in evals.groupby("cell", sort=False):
        good = group[group["flag"].isna() & group["accuracy"].notna()]
        first = group.iloc[0]
        row = {"cell": cell, "label": label(cell), **{a: first[a] for a in AXES}, "runs": len(group),
               "seeds": len(good), "flagged": _flags(group), "best_epoch": _median(good["best_epoch"]),
               "trainable_params": first["trainable_params"], "seconds_per_run": group["seconds"].mean(),
               "seconds_total": total.get(cell, 0.0), "lr": first["lr"], "batch_size": first["batch_size"]}
        for m in ("accuracy", "f1", "auc"):
            row |= dict(zip((f"{m}_mean", f"{m}_sd", f"{m}_lo", f"{m}_hi"), stats.mean_ci(good[m].dropna())))
        rows.append(row)
    return pd.DataFrame(rows)


def _flags(group: pd.DataFrame) -> str:
    counts = group["flag"].value_counts()
    return ", ".join(f"{counts[k]} {k}" for k in diagnostics.EXCLUDED if k in counts) or "none"


def _median(values: pd.Series) -> float:
    values = values.dropna().astype(float)
    return float(values.median()) if len(values) else math.nan


@dataclass
class Tables:
    """Everything the page prints, computed once from the store."""

    stored: Stored
    src: str
    evals: pd.DataFrame
    summary: pd.DataFrame
    significance: pd.DataFrame
    runs_diag: pd.DataFrame
    cells_diag: pd.DataFrame
    curves: pd.DataFrame
    trials: pd.DataFrame
    expected: pd.DataFrame
    aso: str  # 'ran', 'not needed' (no pair of cells with enough seeds) or 'unavailable' (no deepsig)
