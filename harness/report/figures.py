"""The report's figures, drawn from the tables the report prints: every band is a table's interval.

Each function takes a tidy frame and a path, draws one PNG and returns the path; none computes
a statistic the page does not also print. The Agg backend is forced so that a report needs no
display.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FixedFormatter, MaxNLocator, NullLocator  # noqa: E402

DPI = 100
sns.set_theme(style="whitegrid", context="notebook")


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _panels(n: int, width: float = 4.2, height: float = 3.3) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def effects(table: pd.DataFrame, delta: float, metric: str, path: Path) -> Path:
    """Each step's estimate with its simultaneous interval (the answers table), 0 and ±delta marked."""
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    colours = ["tab:green" if v.startswith("better") else "tab:red" if v.startswith("worse") else
               "tab:blue" if v.startswith("equivalent") else "tab:gray" for v in table["verdict"]]
    ax.axvspan(-delta, delta, color="tab:blue", alpha=0.12, label=f"±{delta:g} (smallest effect)")
    ax.axvline(0, color="black", lw=0.8)
    for yi, r, colour in zip(y, table.itertuples(), colours):
        ax.errorbar([r.estimate], [yi], xerr=[[r.estimate - r.lo_sim], [r.hi_sim - r.estimate]], fmt="o",
                    color=colour, elinewidth=2, capsize=3)
    ax.set_yticks(y, table["step"])
    ax.set_xlabel(f"change in {metric} (simultaneous interval of the answers family)")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def metric_vs_axis(cells: pd.DataFrame, x: str, hue: str, panel: str, metric: str, baseline: float | None,
                   log_x: bool, path: Path, names: tuple[str, str] = ("", "")) -> Path:
    """Cell means against one axis, a line per level of another, a panel per combination of the rest;
    error bars: each cell's interval from the cells table."""
    panels = list(dict.fromkeys(cells[panel]))
    fig, axes = _panels(len(panels))
    palette = dict(zip(dict.fromkeys(cells[hue]), sns.color_palette(n_colors=cells[hue].nunique())))
    for ax, name in zip(axes, panels):
        part = cells[cells[panel] == name]
        for level, line in part.groupby(hue, sort=False):
            line = line.sort_values("_x")
            ax.errorbar(line["_x"], line["mean"], yerr=[line["mean"] - line["lo"], line["hi"] - line["mean"]],
                        marker="o", capsize=3, color=palette[level], label=str(level))
        if baseline is not None:
            ax.axhline(baseline, color="black", ls="--", lw=1, label="majority class")
        ax.set_title(name, fontsize=9)
        ticks = sorted(part["_x"].unique())
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FixedFormatter([str(t) for t in part.drop_duplicates("_x").sort_values("_x")[x]]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(names[0] or x)
    axes[0].set_ylabel(metric)
    axes[-1].legend(title=names[1] or hue, fontsize=7, loc="best")
    return _save(fig, path)


def learning_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy by epoch, a panel per cell: thin lines each seed, the thick line their mean."""
    labels = list(dict.fromkeys(curves["label"]))
    fig, axes = _panels(len(labels), 3.4, 2.6)
    for ax, name in zip(axes, labels):
        part = curves[curves["label"] == name]
        for _, run in part.groupby("seed"):
            ax.plot(run["epoch"], run["val_accuracy"], color="tab:blue", alpha=0.35, lw=0.8)
        mean = part.groupby("epoch")["val_accuracy"].mean()
        ax.plot(mean.index, mean.values, color="tab:blue", lw=2, marker="o", ms=3)
        ax.scatter([mean.idxmax()], [mean.max()], marker="*", s=140, color="crimson", zorder=5)
        ax.set_title(name, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("validation accuracy")
    return _save(fig, path)


def gap_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Train minus validation accuracy by epoch: the mean over seeds, one line per cell."""
    fig, ax = plt.subplots(figsize=(7, 4))
    mean = curves.groupby(["label", "epoch"], sort=False)["acc_gap"].mean().reset_index()
    sns.lineplot(mean, x="epoch", y="acc_gap", hue="label", marker="o", ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(ylabel="train − validation accuracy (mean over seeds)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, title=None, loc="best")
    return _save(fig, path)


def heatmap(table: pd.DataFrame, metric: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(1.8 + 1.3 * table.shape[1], 0.9 + 0.5 * table.shape[0]))
    sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis", cbar_kws={"label": f"mean {metric}"}, ax=ax)
    ax.set(xlabel="frozen blocks", ylabel="")
    return _save(fig, path)


def optuna_params(trials: pd.DataFrame, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    sns.scatterplot(trials, x="lr", y="value", hue="label", style="status", s=50, ax=axes[0])
    axes[0].set(xscale="log", xlabel="learning rate (log scale)", ylabel="tuning objective (validation)")
    sns.stripplot(trials, x="batch_size", y="value", hue="label", dodge=True, size=6, ax=axes[1], legend=False)
    axes[1].set(xlabel="batch size")
    axes[0].legend(fontsize=6, title=None)
    return _save(fig, path)


def expected_max(curve: pd.DataFrame, path: Path) -> Path:
    """Expected best objective of k trials ± its sd (the tuning table's), the best trial dashed."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, part), colour in zip(curve.groupby("label", sort=False), sns.color_palette(n_colors=curve["label"].nunique())):
        ax.plot(part["trials"], part["expected"], marker="o", color=colour, label=name)
        ax.fill_between(part["trials"], part["expected"] - part["sd"], part["expected"] + part["sd"], color=colour,
                        alpha=0.15)
        ax.axhline(part["best_trial"].iloc[0], color=colour, ls=":", lw=0.8)
    ax.set(xlabel="tuning trials", ylabel="expected best validation objective (± sd)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=6)
    return _save(fig, path)


def reliability(bins: pd.DataFrame, path: Path) -> Path:
    """Accuracy against confidence per bin, for the chosen cells; the diagonal is perfect calibration."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
    for name, part in bins.groupby("label", sort=False):
        part = part[part["count"] > 0]
        ax.plot(part["confidence"], part["accuracy"], marker="o", label=name)
    ax.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7)
    return _save(fig, path)


def forecast(curves: list[dict], path: Path) -> Path:
    """Each learning curve: observed means (points), the fitted curve and its 95% band out to the forecasts."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for f, colour in zip(curves, sns.color_palette(n_colors=len(curves))):
        t, curve = f["forecast"].table, f["forecast"].curve
        n = np.geomspace(t["size"].min(), t["size"].max(), 200)
        ax.plot(n, curve.accuracy(n), color=colour, label=f["name"])
        ax.fill_between(t["size"], t["lo"], t["hi"], color=colour, alpha=0.15)
        seen = t[t["runs"] > 0]
        ax.scatter(seen["size"], seen["observed"], color=colour, zorder=3)
        if "predicted" in f["backtest"]:
            ax.scatter([f["backtest"]["hidden"]], [f["backtest"]["predicted"]], marker="x", color=colour, zorder=4)
    ax.set(xscale="log", xlabel="training examples (log scale)", ylabel="accuracy")
    ax.legend(fontsize=7)
    return _save(fig, path)


def pareto(cells: pd.DataFrame, frontier: pd.DataFrame, path: Path) -> Path:
    """Each cell's test accuracy (with its interval) against its training seconds per run; the frontier
    (chosen on validation accuracy) joined."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(cells["seconds_per_run"], cells["accuracy_mean"],
                yerr=[cells["accuracy_mean"] - cells["accuracy_lo"], cells["accuracy_hi"] - cells["accuracy_mean"]],
                fmt="o", color="tab:gray", alpha=0.6, capsize=2)
    ax.plot(frontier["seconds_per_run"], frontier["accuracy_mean"], color="tab:green", marker="o", label="frontier (by validation)")
    for r in frontier.itertuples():
        ax.annotate(r.label, (r.seconds_per_run, r.accuracy_mean), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    ax.set(xscale="log", xlabel="training seconds per evaluation run (log scale)", ylabel="test accuracy")
    ax.legend(fontsize=7)
    return _save(fig, path)
