"""Section 5: which figures the data allows, the data each is drawn from, and one line saying what it shows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report import figures
from harness.report.format import label
from harness.report.frames import Stored
from harness.report.parts import Parts

FOLDER = "figures"
TITLES = {"effects": "What each axis did", "vs_size": "Accuracy against data size",
          "vs_freeze": "Accuracy against freezing depth", "heatmap": "The grid",
          "learning_curves": "Validation learning curves", "gaps": "Train-validation gap",
          "reliability": "Reliability diagram", "forecast": "Learning curves and forecasts",
          "pareto": "Accuracy against cost", "optuna": "Learning rate and batch size against the objective",
          "expected_max": "Expected validation performance against trials"}


def draw(stored: Stored, parts: Parts, folder: Path) -> dict[str, tuple[Path, str]]:
    """Every figure the data allows: name -> (path, caption)."""
    out = {}
    a, summary, base = stored.analysis, parts.summary, parts.baseline
    answers = parts.accuracy.grid.answers if parts.accuracy.grid is not None else pd.DataFrame()
    if not answers.empty:
        steps = answers.assign(step=[f"{r.axis} {r.level_a}→{r.level_b}" + (f" ({r.context})" if r.context else "")
                                     for r in answers.itertuples()])
        out["effects"] = (figures.effects(steps, a.smallest_effect, "accuracy", folder / "effects.png"),
                          f"Each axis's steps from the answers table: estimate and simultaneous {1 - a.alpha:.0%} "
                          f"interval (max-t over the family); green better, red worse, blue equivalent within "
                          f"±{a.smallest_effect:g}, grey undecided; the shaded band is ±{a.smallest_effect:g}.")
    cells = summary.assign(mean=summary["accuracy_mean"], lo=summary["accuracy_lo"], hi=summary["accuracy_hi"])
    cells = cells.dropna(subset=["mean"])
    where = "test" if stored.source == "test" else "validation"
    line = f"Each point: a cell's mean {where} accuracy with its {1 - a.alpha:.0%} interval from the cells table; " \
           "dashed: the majority class."
    baseline = base.get("accuracy") if base else None
    if not cells.empty:
        for name, x, hue, log_x in (("vs_size", "data_size", "freeze", True), ("vs_freeze", "freeze", "data_size", False)):
            frame = _with_panels(stored, cells, x, hue)
            titles = {a.column: a.title for a in stored.axes}
            out[name] = (figures.metric_vs_axis(frame, x, hue, "_panel", f"{where} accuracy", baseline, log_x,
                                                folder / f"accuracy_vs_{x}.png", (titles[x], titles[hue])), line)
        out["heatmap"] = (figures.heatmap(_heat(stored, cells), f"{where} accuracy", folder / "heatmap.png"),
                          f"Mean {where} accuracy of every cell (rows: the other axes).")
    curves = parts.curves
    if not curves.empty:
        out["learning_curves"] = (figures.learning_curves(curves, folder / "learning_curves.png"),
                                  "Validation accuracy by epoch: thin lines each kept seed, the thick line their "
                                  "mean, the star its peak.")
        out["gaps"] = (figures.gap_curves(curves, folder / "gap_curves.png"),
                       "Training minus validation accuracy by epoch, mean over seeds (training accuracy is a running "
                       "figure with dropout on).")
    cal = parts.calibration
    if cal is not None and not cal.reliability.empty:
        chosen = _extremes(cal.cells)
        bins = cal.reliability[cal.reliability["cell"].isin(chosen)].assign(label=lambda f: f["cell"].map(label))
        out["reliability"] = (figures.reliability(bins, folder / "reliability.png"),
                              "Accuracy against confidence in 15 bins, pooled over each cell's runs, for the best "
                              "and the worst calibrated cells (lowest and highest ECE); the diagonal is perfect "
                              "calibration.")
    lab = parts.lab
    fitted = [f for f in lab.forecasts if f["forecast"].curve is not None]
    if fitted:
        out["forecast"] = (figures.forecast(fitted, folder / "forecast.png"),
                           "Observed mean accuracy (points), the fitted learning curve and its 95% band from "
                           "resampling seeds (the forecast table's), crosses: the backtest's prediction of the "
                           "largest size from the smaller ones.")
    if not lab.frontier.empty:
        out["pareto"] = (figures.pareto(cells, lab.frontier, folder / "pareto.png"),
                         "Every cell's accuracy and interval (the cells table's) against its training seconds per "
                         "run; green: the cells no other beats on both.")
    tuning = parts.tuning
    trials = tuning.trials.dropna(subset=["value"]) if not tuning.trials.empty else tuning.trials
    if not trials.empty:
        out["optuna"] = (figures.optuna_params(trials, folder / "optuna_params.png"),
                         "Every tuning trial's objective against its learning rate and batch size.")
        out["expected_max"] = (figures.expected_max(tuning.expected, folder / "expected_max.png"),
                               "Expected best validation objective of k trials ± its sd (the tuning table's), "
                               "dotted: the best trial.")
    return out


def _with_panels(stored: Stored, cells: pd.DataFrame, x: str, hue: str) -> pd.DataFrame:
    """Cells with a numeric x position and a panel name from every axis but x and hue."""
    axis = {a.column: a for a in stored.axes}
    rest = [c for c in axis if c not in (x, hue)]
    frame = cells.assign(_panel=[" ".join(axis[c].label(r[c]) for c in rest) or "all" for _, r in cells.iterrows()])
    if x == "data_size":  # "all" sits at the training pool's size
        frame["_x"] = [stored.splits.get("train_pool", 0) if v == "all" else v for v in frame[x]]
    else:
        frame["_x"] = [axis[x].levels.index(v) for v in frame[x]]
    frame[hue] = frame[hue].astype(str)
    return frame


def _heat(stored: Stored, cells: pd.DataFrame) -> pd.DataFrame:
    axis = {a.column: a for a in stored.axes}
    rest = [c for c in axis if c != "freeze"]
    rows = [" ".join(axis[c].label(r[c]) for c in rest) for _, r in cells.iterrows()]
    table = cells.assign(row=rows, col=cells["freeze"].astype(str)).pivot(index="row", columns="col", values="mean")
    return table.loc[list(dict.fromkeys(rows)), [str(v) for v in axis["freeze"].levels if str(v) in table.columns]]


def _extremes(cells: pd.DataFrame) -> list[str]:
    ranked = cells.sort_values("ece")
    return list(dict.fromkeys([ranked.iloc[0]["cell"], ranked.iloc[-1]["cell"]]))


def render(drawn: dict[str, tuple[Path, str]]) -> list[str]:
    lines = ["## 5. Figures", ""]
    for name, title in TITLES.items():
        if name in drawn:
            path, caption = drawn[name]
            lines += [f"![{title}]({FOLDER}/{path.name})", "", f"*{title}.* {caption}", ""]
    missing = [t for n, t in TITLES.items() if n not in drawn]
    if missing:
        lines += ["Not drawn, the store has no data for them: " + "; ".join(missing) + ".", ""]
    return lines
