"""Sections 1 and 5: the summary by cell, the individual evaluation runs, and the tuning trials.

The per-cell frame comes from harness.report_frames; the tuning frames (every trial, and
the expected best of k trials per cell) are built here, beside the section that prints them.
"""

from __future__ import annotations

import math

import pandas as pd

from harness import stats
from harness.report_format import label, md_table, mean_sd_ci, num
from harness.report_frames import Stored, Tables


def section_summary(t: Tables) -> list[str]:
    binary = len(t.stored.class_names) == 2
    where = "test" if t.src == "test" else "validation (no test split: the restored epoch was chosen on it, " \
                                            "so these are optimistic)"
    lines = ["## 1. Summary by cell", "",
             f"Metrics on the {where} set over evaluation seeds: mean ± sd [95% t-interval]. Runs that failed, "
             "diverged or collapsed to one class are counted under *excluded* and kept out of every mean. "
             "A single kept seed has no sd (n/a). Time in seconds: per evaluation run, and the cell's total "
             "including tuning.", "",
             f"{len(t.summary)} cells, named in the tables without the bars of their stored ids: "
             + ", ".join(f"`{c}`" for c in t.summary["cell"]) + ".", ""]
    if not binary:
        lines += ["ROC-AUC is reported for binary tasks only; this one has "
                  f"{len(t.stored.class_names)} classes.", ""]
    header = ["cell", "seeds", "excluded", "accuracy", "macro-F1"] + (["ROC-AUC"] if binary else []) + \
        ["best epoch", "trainable params", "s/run", "cell s", "lr", "batch"]
    rows = [[r.label, f"{r.seeds}/{r.runs}", r.flagged, mean_sd_ci(r.accuracy_mean, r.accuracy_sd, r.accuracy_lo,
             r.accuracy_hi), mean_sd_ci(r.f1_mean, r.f1_sd, r.f1_lo, r.f1_hi)]
            + ([mean_sd_ci(r.auc_mean, r.auc_sd, r.auc_lo, r.auc_hi)] if binary else [])
            + [num(r.best_epoch, "g"), f"{int(r.trainable_params):,}" if pd.notna(r.trainable_params) else "n/a",
               num(r.seconds_per_run, ".1f"), num(r.seconds_total, ".1f"), num(r.lr, ".2e"), str(r.batch_size)]
            for r in t.summary.itertuples()]
    return lines + md_table(header, rows) + _runs_lines(t, binary)


def _runs_lines(t: Tables, binary: bool) -> list[str]:
    """One row per evaluation run, then the runs kept out of the means."""
    lines = ["### Individual evaluation runs", "",
             "Accuracy of each run with its Wilson 95% interval on the evaluated examples.", ""]
    rows = [[label(r.cell), str(r.seed), r.flag if isinstance(r.flag, str) else r.status, _wilson(r), num(r.f1)]
            + ([num(r.auc)] if binary else []) + [num(r.best_epoch, "g"), num(r.stopped_epoch, "g")]
            for r in t.evals.itertuples()]
    lines += md_table(["cell", "seed", "status", "accuracy [Wilson 95%]", "macro-F1"]
                      + (["ROC-AUC"] if binary else []) + ["best epoch", "stopped"], rows)
    flagged = t.evals[t.evals["flag"].notna()]
    if len(flagged):
        lines += ["Excluded from the means: " + "; ".join(f"{label(r.cell)} seed {r.seed} ({r.flag})"
                                                          for r in flagged.itertuples()) + ".", ""]
    return lines


def _wilson(r) -> str:
    if math.isnan(r.accuracy):
        return "n/a"
    return f"{r.accuracy:.3f} [{r.wilson_lo:.3f}, {r.wilson_hi:.3f}] of {r.n}"


def tuning(stored: Stored) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, expected-max curve): every tuning trial, and E[best of k trials] per cell (Dodge et al.)."""
    trials = pd.DataFrame([{"cell": r["cell"], "label": label(r["cell"]), "trial": r["trial"], "status": r["status"],
                            "lr": r["params"]["lr"], "batch_size": r["params"]["batch_size"],
                            "objective": r.get("objective"), "seconds": r.get("seconds")}
                           for r in stored.records if r["role"] == "tune"])
    if trials.empty:
        return trials, pd.DataFrame()
    done = trials.dropna(subset=["objective"])
    curve = [{"cell": cell, "label": label(cell), "trials": k, "expected": stats.expected_max(g["objective"], k)}
             for cell, g in done.groupby("cell", sort=False) for k in range(1, len(g) + 1)]
    return trials, pd.DataFrame(curve)


def section_tuning(t: Tables) -> list[str]:
    lines = ["## 5. Tuning", ""]
    if t.trials.empty:
        return lines + ["No tuning trials: every cell used the study's fixed learning rate and batch size.", ""]
    top = t.expected.groupby("cell", sort=False)["expected"].agg(["first", "last"]) if not t.expected.empty \
        else pd.DataFrame(columns=["first", "last"])
    rows = []
    for r in t.summary.itertuples():
        g = t.trials[t.trials["cell"] == r.cell]
        counts = g["status"].value_counts()
        said = ", ".join(f"{counts[k]} {k}" for k in sorted(counts.index))
        e1, en = (top.loc[r.cell, "first"], top.loc[r.cell, "last"]) if r.cell in top.index else (math.nan,) * 2
        rows.append([r.label, f"{len(g)} ({said})", num(e1), num(en), num(r.lr, ".2e"), str(r.batch_size)])
    lines += md_table(["cell", "trials", "expected best of 1", "best of all", "chosen lr", "chosen batch"], rows)
    return lines + ["The expected best of k trials (Dodge et al. 2019) treats the completed trials as draws from "
                    "one distribution; pruned and failed trials have no objective and are left out, and TPE's "
                    "later trials depend on earlier ones, so read it as an approximation.", ""]
