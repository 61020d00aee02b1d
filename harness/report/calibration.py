"""Section 4: per-class results and calibration of every cell, from the tested runs' probabilities.

Per class: precision, recall and F1 (the mean over a cell's kept runs) and the confusion
matrix (summed over them). Calibration: expected calibration error (15 equal-width bins of
the top-class confidence, Guo et al. 2017), Brier score and negative log-likelihood; NLL is
the run's own test loss (stored probabilities are rounded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.stats import calibration as cal
from harness.evidence import Evidence
from harness.report.cells import CHOSEN, best_cell
from harness.report.format import label, md_table, num
from harness.kept import flag
from harness.report.frames import Stored, probabilities


@dataclass(frozen=True)
class Calibration:
    cells: pd.DataFrame  # per cell: runs, ECE, Brier, NLL (means over runs)
    classes: pd.DataFrame  # per cell and class: precision, recall, F1 (means), support
    confusion: dict[str, np.ndarray]  # cell -> (K, K) counts summed over its runs (row: true, column: predicted)
    reliability: pd.DataFrame  # per cell and bin, pooled over its runs: count, confidence, accuracy


def compute(stored: Stored, ev: Evidence) -> Calibration | None:
    if ev.source != "test" or not len(ev.labels):
        return None
    k, labels = len(stored.class_names), ev.labels.astype(int)
    scores, classes, reliab, confusion = [], [], [], {}
    for cell, runs in _by_cell(stored):
        probs = [p for r in runs if (p := probabilities(r, k)) is not None and len(p) == len(labels)]
        if not probs:
            continue
        scores.append({"cell": cell, "runs": len(probs),
                       "ece": np.mean([cal.ece(labels, p) for p in probs]),
                       "brier": np.mean([cal.brier(labels, p) for p in probs]),
                       "nll": np.mean([r.test["loss"] for r in runs])})
        per = pd.concat([cal.per_class(labels, p, stored.class_names) for p in probs])
        classes.append(per.groupby("class", sort=False).agg(precision=("precision", "mean"), recall=("recall", "mean"),
                                                            f1=("f1", "mean"), support=("support", "first"))
                       .reset_index().assign(cell=cell))
        confusion[cell] = sum(cal.confusion(labels, p) for p in probs)
        stacked = np.concatenate(probs)
        reliab.append(cal.reliability(np.tile(labels, len(probs)), stacked).assign(cell=cell))
    if not scores:
        return None
    return Calibration(pd.DataFrame(scores), pd.concat(classes, ignore_index=True),
                       confusion, pd.concat(reliab, ignore_index=True))


def _by_cell(stored: Stored):
    cells: dict[str, list] = {}
    for r in stored.evals:
        if flag(r) is None and r.test.get("pred"):
            cells.setdefault(r.cell, []).append(r)
    return cells.items()


def sentence(c: Calibration | None, summary: pd.DataFrame) -> str:
    best = best_cell(summary)
    if c is None or best is None or best not in set(c.cells["cell"]):
        return ""
    row = c.cells.set_index("cell").loc[best]
    worst = c.classes[c.classes["cell"] == best].sort_values("f1").iloc[0]
    return (f"In {CHOSEN}, {label(best)}, the expected calibration error is {row['ece']:.3f}, Brier "
            f"{row['brier']:.3f}, NLL {row['nll']:.3f}; its weakest class is *{worst['class']}* (precision "
            f"{num(worst['precision'])}, recall {num(worst['recall'])}, F1 {num(worst['f1'])}).")


# --- the page ---------------------------------------------------------------------------------

def render(stored: Stored, c: Calibration | None, summary: pd.DataFrame) -> list[str]:
    lines = ["## 4. Per-class results and calibration", ""]
    if c is None:
        return lines + ["No tested run stored its predictions and probabilities: nothing to show.", ""]
    lines += ["Means over each cell's kept runs. ECE: expected calibration error over 15 equal-width confidence "
              "bins (0 = confidences match accuracies); Brier: "
              + ("the mean squared distance of the positive class's probability to the 0/1 label (the binary form; "
                 "the one-hot form is twice it)" if stored.binary else
                 "the mean over examples of the squared distance of the class probabilities to the one-hot label")
              + " (lower is better); NLL: the test loss. " + sentence(c, summary), ""]
    names = stored.class_names
    wide = c.classes.pivot_table(index="cell", columns="class", values=["precision", "recall", "f1"], sort=False)
    rows = []
    for r in c.cells.itertuples():
        per = [num(wide.loc[r.cell, (m, n)]) if (m, n) in wide.columns else "n/a" for n in names
               for m in ("precision", "recall", "f1")]
        rows.append([label(r.cell), str(r.runs), num(r.ece), num(r.brier), num(r.nll)] + per)
    header = ["cell", "runs", "ECE", "Brier", "NLL"] + [f"{n} {m}" for n in names for m in ("P", "R", "F1")]
    lines += md_table(header, rows)
    best = best_cell(summary)
    if best in c.confusion:
        matrix = c.confusion[best]
        lines += [f"Confusion matrix of {CHOSEN}, {label(best)}, summed over its runs "
                  "(rows: true class, "
                  "columns: predicted; every cell's is in `tables/confusion.csv`):", ""]
        lines += md_table(["true \\ predicted"] + list(names),
                          [[n] + [str(int(v)) for v in row] for n, row in zip(names, matrix)])
    return lines


def confusion_frame(c: Calibration | None, names: list[str]) -> pd.DataFrame:
    if c is None:
        return pd.DataFrame()
    return pd.DataFrame([{"cell": cell, "true": names[i], "predicted": names[j], "count": int(m[i, j])}
                         for cell, m in c.confusion.items() for i in range(len(m)) for j in range(len(m))])
