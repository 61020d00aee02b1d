"""Section 4: the figures the data allows, and one line per figure saying what it shows.

The drawing lives in harness.figures; this module chooses the data for each figure and
reads the figures' message off the same tables the page prints.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report_format import signed
from harness.report_frames import ORDER, Tables

FIGURES = "figures"


def draw_figures(t: Tables, folder: Path) -> dict[str, Path]:
    """Draw every figure the data allows; returns name -> path of those drawn."""
    from harness import figures  # seaborn and matplotlib load only when a page is written

    good = t.evals[t.evals["flag"].isna() & t.evals["accuracy"].notna()].assign(
        freeze_label=lambda f: f["freeze"].astype(str), size_label=lambda f: f["data_size"].astype(str))
    order = [str(v) for v in sorted(good["freeze"].unique(), key=ORDER["freeze"])]
    trials = t.trials.dropna(subset=["objective"]) if not t.trials.empty else t.trials
    return figures.draw_all(folder, t.curves, good, heat_table(t.summary), order, trials, t.expected)


def heat_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy with rows (data size, epochs) and columns freezing depth, in grid order."""
    frame = summary.assign(row=[f"n={r.data_size}, ep={r.epochs}" for r in summary.itertuples()],
                           col=summary["freeze"].astype(str))
    table = frame.pivot(index="row", columns="col", values="accuracy_mean")
    rows = sorted(frame["row"].unique(), key=lambda s: _row_key(frame, s))
    cols = [str(v) for v in sorted(summary["freeze"].unique(), key=ORDER["freeze"])]
    return table.loc[rows, cols]


def _row_key(frame: pd.DataFrame, row: str) -> tuple:
    first = frame[frame["row"] == row].iloc[0]
    return ORDER["data_size"](first["data_size"]), ORDER["epochs"](first["epochs"])


def readings(t: Tables) -> dict[str, str]:
    """One line per figure saying what it shows, computed from the same tables the page prints."""
    out = {}
    if not t.curves.empty:
        mean = t.curves.groupby(["label", "epoch"], sort=False)["val_accuracy"].mean().reset_index()
        peaks = mean.loc[mean.groupby("label", sort=False)["val_accuracy"].idxmax()]
        last = mean.groupby("label", sort=False)["epoch"].max()
        early = [p.label for p in peaks.itertuples() if p.epoch < last[p.label]]
        out["learning_curves"] = (f"Validation accuracy by epoch (band ±1 sd over seeds, star at the peak of the "
                                  f"mean): the mean peaks before the last epoch in {len(early)} of {len(peaks)} "
                                  f"cells" + (f" ({', '.join(early)})." if early else "."))
        gap = t.curves.groupby("label")["epoch"].transform("max") == t.curves["epoch"]
        by_cell = t.curves[gap].groupby("label")["acc_gap"].mean()
        out["gaps"] = (f"Train minus validation accuracy by epoch: at the last epoch the mean gap ranges from "
                       f"{by_cell.min():+.3f} ({by_cell.idxmin()}) to {by_cell.max():+.3f} ({by_cell.idxmax()}).")
    sig = t.significance
    for axis, name, what in (("data_size", "accuracy_vs_size", "training examples (log scale)"),
                             ("freeze", "accuracy_vs_freeze", "frozen blocks")):
        rows = sig[sig["axis"] == axis] if not sig.empty else sig
        change = (f"; the adjacent-level step changes it by {signed(rows['diff'].mean())} on average"
                  if len(rows) else "; one level only")
        out[name] = f"{t.src.capitalize()} accuracy against {what} (95% CI over seeds){change}."
    if not t.summary.empty and t.summary["accuracy_mean"].notna().any():
        s = t.summary.dropna(subset=["accuracy_mean"])
        best, worst = s.loc[s["accuracy_mean"].idxmax()], s.loc[s["accuracy_mean"].idxmin()]
        out["heatmap"] = (f"Mean {t.src} accuracy of every cell: best {best['label']} ({best['accuracy_mean']:.3f}), "
                          f"worst {worst['label']} ({worst['accuracy_mean']:.3f}).")
    if not t.expected.empty:
        top = t.expected.groupby("label")["expected"].agg(["first", "last"])
        out["optuna"] = (f"Tuning objective against learning rate and batch size, every completed trial; best "
                         f"per cell from {top['last'].min():.3f} to {top['last'].max():.3f}.")
        out["expected_max"] = (f"Expected best validation objective after k trials (Dodge et al. 2019): one trial "
                               f"gives on average {(top['last'] - top['first']).mean():.3f} less than all of them, "
                               f"a measure of how much the search mattered.")
    return out


def section_figures(t: Tables, drawn: dict[str, Path], read: dict[str, str]) -> list[str]:
    lines = ["## 4. Figures", ""]
    titles = {"learning_curves": "Validation learning curves", "accuracy_vs_size": "Accuracy against data size",
              "accuracy_vs_freeze": "Accuracy against freezing depth", "heatmap": "The grid",
              "gaps": "Train-validation gap", "optuna": "Learning rate and batch size against the objective",
              "expected_max": "Expected validation performance against trials"}
    for name, title in titles.items():
        if name in drawn:
            lines += [f"![{title}]({FIGURES}/{drawn[name].name})", "", f"*{title}.* {read.get(name, '')}", ""]
        else:
            lines += [f"*{title}:* not drawn, the store has no data for it.", ""]
    return lines
