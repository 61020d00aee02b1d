"""The report's figures: seaborn PNGs drawn from tidy DataFrames the report has already built.

Each function takes the frame and the output path, draws one figure, saves it and
returns the path; none computes a statistic the report does not also print. The
Agg backend is forced so the report runs without a display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
from matplotlib.ticker import FixedFormatter, MaxNLocator, NullLocator  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

DPI = 100
FILES = {
    "learning_curves": "learning_curves.png", "accuracy_vs_size": "accuracy_vs_data_size.png",
    "accuracy_vs_freeze": "accuracy_vs_freeze.png", "heatmap": "heatmap.png", "gaps": "gap_curves.png",
    "optuna": "optuna_params.png", "expected_max": "expected_max.png"}
sns.set_theme(style="whitegrid", context="notebook")


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _mark_peak(data: pd.DataFrame, y: str, **kwargs) -> None:
    """Mark the epoch where the seed-mean curve peaks."""
    mean = data.groupby("epoch")[y].mean()
    plt.gca().scatter([mean.idxmax()], [mean.max()], marker="*", s=160, color="crimson", zorder=5,
                      label="peak")


def learning_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy by epoch, one panel per cell; band = ±1 sd over seeds, star = peak of the mean."""
    grid = sns.relplot(curves, x="epoch", y="val_accuracy", col="label", col_wrap=min(4, curves["label"].nunique()),
                       kind="line", errorbar="sd", marker="o", height=2.6, aspect=1.2)
    grid.map_dataframe(_mark_peak, y="val_accuracy")
    grid.set_titles("{col_name}", size=9)
    grid.set_axis_labels("epoch", "validation accuracy")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(grid.figure, path)


def gap_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Train minus validation accuracy by epoch, one line per cell (mean over seeds, band = ±1 sd)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(curves, x="epoch", y="acc_gap", hue="label", errorbar="sd", marker="o", ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(ylabel="train − validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, title=None, loc="best")
    return _save(fig, path)


def accuracy_vs_size(runs: pd.DataFrame, metric: str, path: Path) -> Path:
    """Metric against training examples (log x), one line per freezing depth, a panel per epoch budget."""
    grid = sns.relplot(runs, x="train_size", y=metric, hue="freeze_label", col="epochs", kind="line",
                       errorbar=("ci", 95), seed=0, marker="o", height=3.2, aspect=1.2, facet_kws={"sharey": True})
    sizes = sorted(runs["train_size"].unique())
    grid.set(xscale="log", xticks=sizes)
    for ax in grid.axes.flat:  # label the sizes that were run, not powers of ten
        ax.xaxis.set_major_formatter(FixedFormatter([str(n) for n in sizes]))
        ax.xaxis.set_minor_locator(NullLocator())
    grid.set_axis_labels("training examples (log scale)", metric.replace("_", " "))
    grid.set_titles("max epochs = {col_name}")
    if grid.legend is not None:  # one freezing depth: no legend
        grid.legend.set_title("frozen")
    return _save(grid.figure, path)


def accuracy_vs_freeze(runs: pd.DataFrame, metric: str, order: list[str], path: Path) -> Path:
    """Metric against freezing depth (most frozen on the left), one line per data size, a panel per epochs."""
    dodge = 0.2 if runs["size_label"].nunique() > 1 else False  # seaborn divides by (hue levels - 1)
    grid = sns.catplot(runs, x="freeze_label", y=metric, hue="size_label", col="epochs", kind="point", order=order,
                       errorbar=("ci", 95), seed=0, dodge=dodge, height=3.2, aspect=1.2)
    grid.set_axis_labels("frozen blocks ('all' = classifier only)", metric.replace("_", " "))
    grid.set_titles("max epochs = {col_name}")
    if grid.legend is not None:  # one data size: no legend
        grid.legend.set_title("training examples")
    return _save(grid.figure, path)


def heatmap(table: pd.DataFrame, metric: str, path: Path) -> Path:
    """Cell means as a grid: rows data size and epochs, columns freezing depth."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * table.shape[1], 0.9 + 0.5 * table.shape[0]))
    sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis", cbar_kws={"label": f"mean {metric}"}, ax=ax)
    ax.set(xlabel="frozen blocks", ylabel="training examples, max epochs")
    return _save(fig, path)


def optuna_params(trials: pd.DataFrame, path: Path) -> Path:
    """Each tuning trial's objective against its learning rate (log x) and its batch size."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    sns.scatterplot(trials, x="lr", y="objective", hue="label", style="label", s=50, ax=axes[0])
    axes[0].set(xscale="log", xlabel="learning rate (log scale)", ylabel="tuning objective (validation)")
    sns.stripplot(trials, x="batch_size", y="objective", hue="label", dodge=True, size=6, ax=axes[1],
                  legend=False)
    axes[1].set(xlabel="batch size")
    axes[0].legend(fontsize=7, title=None)
    return _save(fig, path)


def expected_max(curves: pd.DataFrame, path: Path) -> Path:
    """Expected best validation objective against the number of tuning trials (Dodge et al. 2019)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(curves, x="trials", y="expected", hue="label", marker="o", ax=ax)
    ax.set(xlabel="tuning trials", ylabel="expected best validation objective")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, title=None)
    return _save(fig, path)


def draw_all(folder: Path, curves: pd.DataFrame, runs: pd.DataFrame, heat: pd.DataFrame, freeze_order: list[str],
             trials: pd.DataFrame, expected: pd.DataFrame) -> dict[str, Path]:
    """Every figure its data allows, under `folder`; name -> path of those drawn.

    `runs` holds the kept evaluation runs (with freeze_label, size_label), `heat` the cell means
    as a grid, `trials` the completed tuning trials.
    """
    drawn, path = {}, lambda name: folder / FILES[name]
    if not curves.empty:
        drawn["learning_curves"] = learning_curves(curves, path("learning_curves"))
        drawn["gaps"] = gap_curves(curves, path("gaps"))
    if not runs.empty:
        drawn["accuracy_vs_size"] = accuracy_vs_size(runs, "accuracy", path("accuracy_vs_size"))
        drawn["accuracy_vs_freeze"] = accuracy_vs_freeze(runs, "accuracy", freeze_order, path("accuracy_vs_freeze"))
        drawn["heatmap"] = heatmap(heat, "accuracy", path("heatmap"))
    if not trials.empty:
        drawn["optuna"] = optuna_params(trials, path("optuna"))
        drawn["expected_max"] = expected_max(expected, path("expected_max"))
    return drawn
