"""Section 6: the tuning trials, and how much the search mattered per cell.

Expected validation performance (Dodge et al. 2019): the expected best objective of k trials
drawn from the cell's trials, with its standard deviation, beside the best trial actually run.
A pruned trial counts with the last value it reported (it was stopped for looking worse);
failed trials are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.kept import untuned
from harness.report import diagnostics
from harness.stats.search import expected_best_curve
from harness.report.format import label, md_table, num
from harness.report.frames import METRIC_NAMES, Stored


@dataclass(frozen=True)
class Tuning:
    trials: pd.DataFrame  # every tuning trial
    expected: pd.DataFrame  # per cell and k: expected best of k trials, sd, best trial


def compute(stored: Stored) -> Tuning:
    metric = stored.metric
    trials = pd.DataFrame([{"cell": r.cell, "label": label(r.cell), "search": r.replicate + 1, "trial": r.trial,
                            "status": r.status,
                            "lr": r.params.get("lr"), "batch_size": r.params.get("batch_size"),
                            "objective": r.objective, "value": trial_value(r.to_dict(), metric),
                            "seconds": r.seconds} for r in stored.records if r.role == "tune"])
    if trials.empty:
        return Tuning(trials, pd.DataFrame())
    higher = metric != "val_loss"
    curve = []
    for cell, g in trials.dropna(subset=["value"]).groupby("cell", sort=False):
        chosen = g.loc[g["status"] == "ok", "objective"].dropna()  # the trials that could be chosen
        best = (chosen.max() if higher else chosen.min()) if len(chosen) else float("nan")
        curve += [{"cell": cell, "label": label(cell), **point, "best_trial": best}
                  for point in expected_best_curve(g["value"].astype(float), higher)]
    return Tuning(trials, pd.DataFrame(curve))


def mattered(t: Tuning) -> pd.Series:
    """Per cell: best trial minus the expected best of one trial, how much searching gained."""
    if t.expected.empty:
        return pd.Series(dtype=float)
    first = t.expected[t.expected["trials"] == 1].set_index("cell")
    return (first["best_trial"] - first["expected"]).abs()


def render(stored: Stored, t: Tuning, summary: pd.DataFrame) -> list[str]:
    lines = ["## 6. Tuning", ""]
    if t.trials.empty:
        return lines + ["No tuning trials: every cell used the study's fixed learning rate and batch size.", ""]
    metric = METRIC_NAMES.get(stored.metric, stored.metric)
    search = stored.study.search
    lines += [f"Optuna ({search.sampler} sampler, {search.pruner} pruner) tuned the learning rate and batch size on "
              f"the validation set with the tuning seeds; objective: validation {metric}. *E[best of 1]* and *E[best "
              f"of N]*: the expected best objective of 1 and of all N trials drawn from the cell's trials, ± its sd "
              f"(Dodge et al. 2019; pruned trials, and trials that collapsed to one class, count with their last "
              f"value); *best trial*: the best objective of a trial that could be chosen (finished ok); *search "
              f"gain*: best trial − E[best of 1], how much searching mattered.", ""]
    gain = mattered(t)
    chosen = summary.set_index("cell")
    failed = untuned(stored.records)
    rows = []
    for cell, g in t.trials.groupby("cell", sort=False):
        counts = ", ".join(f"{n} {k}" for k, n in g["status"].value_counts().sort_index().items())
        e = t.expected[t.expected["cell"] == cell] if not t.expected.empty else pd.DataFrame()
        one, allk = (e.iloc[0], e.iloc[-1]) if len(e) else (None, None)
        searches = g["search"].nunique()
        lr, batch = (num(chosen.loc[cell, "lr"], ".2e"), str(chosen.loc[cell, "batch_size"])) \
            if cell in chosen.index and searches == 1 else (("per search", "per search") if searches > 1 else ("-", "-"))
        bad = [r + 1 for c, r in failed if c == cell]
        rows.append([label(cell), str(searches) + (f" (untuned: {', '.join(map(str, bad))})" if bad else ""),
                     f"{len(g)} ({counts})", _pm(one), _pm(allk),
                     num(allk["best_trial"]) if allk is not None else "n/a", num(gain.get(cell, math.nan)), lr, batch])
    return lines + md_table(["cell", "searches", "trials", "E[best of 1] ± sd", "E[best of N] ± sd", "best trial",
                             "search gain", "chosen lr", "chosen batch"], rows)


def _pm(point) -> str:
    return "n/a" if point is None else f"{point['expected']:.3f} ± {point['sd']:.3f}"


def trial_value(record: dict, metric: str) -> float | None:
    """A tuning trial's value for the expected best of k trials (harness.stats.search.expected_best).

    Complete: its objective. Pruned: the last validation ``metric`` it reported (of its first tuning
    seed, the one the pruner follows): it was stopped because that looked worse than its peers, and
    dropping it would leave only the survivors and inflate the expected best of few trials. Failed
    (or no validation at all): None, kept out.
    """
    if record.get("objective") is not None:
        return float(record["objective"])
    rows = diagnostics.validated(record.get("history") or [])
    if record.get("status") == "pruned" and rows:
        return float(rows[-1][metric])
    return None
