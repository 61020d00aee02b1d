"""The effects: what each axis did, from one model of the whole grid (harness.stats.contrasts).

Three families per metric, each with simultaneous intervals: the answers (each axis's
adjacent steps averaged over the rest of the grid, and per level where two axes interact),
the interaction tests, and the detail (every adjacent pair of cells). Accuracy always; the
study's own metric too when it is macro-F1; ROC-AUC per cell only (binary tasks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.stats import grid_model
from harness.stats.contrasts import GridEstimates, analyse
from harness.evidence import Evidence
from harness.stats.metrics import macro_f1
from harness.report.format import effect, md_table, num, pval
from harness.report.frames import Stored

BOOTSTRAP_DRAWS = 300  # cluster-bootstrap draws for a metric that is not a mean over examples


@dataclass(frozen=True)
class MetricEstimates:
    metric: str  # "accuracy", "macro-F1" or "ROC-AUC"
    grid: GridEstimates | None  # None: no kept run to estimate from
    note: str = ""  # how its test part was estimated


def estimate(stored: Stored, ev: Evidence, metric: str = "accuracy") -> MetricEstimates:
    """The grid's estimates for one metric; the test part clustered by the evidence's groups."""
    a = stored.analysis
    axes = [x.column for x in stored.axes]
    if not ev.kept.any():
        return MetricEstimates(metric, None, "no kept run")
    cells = ev.cells[axes]
    if metric == "accuracy":
        return MetricEstimates(metric, analyse(ev.Y, ev.groups, cells, ev.order, a.alpha, a.smallest_effect,
                                               replicates=ev.replicates, seeds=ev.seeds),
                               "clustered (CR1) covariance of per-example correctness")
    pred = ev.pred if metric == "macro-F1" else _positive_probs(stored, ev)
    score = (lambda y, p: macro_f1(y, p.astype(int), len(stored.class_names))) if metric == "macro-F1" else _auc
    runs, cov, df = grid_model.bootstrap_covariance(pred, ev.labels, ev.groups, score, BOOTSTRAP_DRAWS)
    comp = grid_model.components(runs, cov, df, replicates=ev.replicates, seeds=ev.seeds)
    grid = analyse(ev.Y, ev.groups, cells, ev.order, a.alpha, a.smallest_effect, comp=comp)
    return MetricEstimates(metric, grid, f"cluster bootstrap over groups, {BOOTSTRAP_DRAWS} draws, seed 0")


def _positive_probs(stored: Stored, ev: Evidence) -> np.ndarray:
    out = np.full(ev.Y.shape, np.nan)
    cell_ids, columns = list(ev.cells["cell"]), list(zip(ev.replicates.tolist(), ev.seeds.tolist()))
    for r in stored.evals:
        if r.cell in cell_ids and (r.replicate, r.seed) in columns and r.test.get("prob"):
            c, s = cell_ids.index(r.cell), columns.index((r.replicate, r.seed))
            if ev.kept[c, s]:
                out[c, s] = r.test["prob"]
    return out


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC-AUC from ranks: the Mann-Whitney U of the positives over n_pos n_neg (ties count half)."""
    pos = labels == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = sps.rankdata(scores)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# --- the page ---------------------------------------------------------------------------------

def render(stored: Stored, estimates: list[MetricEstimates]) -> list[str]:
    a = stored.analysis
    lines = ["## 2. Effects", "",
             f"One model of the whole grid per metric: every kept run enters, each cell's seed-to-seed variance "
             f"and the test set's sampling variance (clustered by {_groups(stored)}) combine into each "
             f"interval (see *How to read this report*). Each family's intervals are simultaneous "
             f"{1 - a.alpha:.0%} intervals (max-t), so every verdict in a family holds at once with probability "
             f"{1 - a.alpha:.0%}: *better*/*worse* when the interval excludes 0, *equivalent* when it lies inside "
             f"±{a.smallest_effect:g} (`analysis.smallest_effect`), else *undecided*, with the seeds or the test "
             f"set that would decide it. *P(run b > run a)*: for whoever trains once, the chance that one run of the "
             "step's second level beats one run of its first, from the cells' seed spreads plus the test set's "
             "sampling of the difference (a normal approximation; harness.stats.one_run).", ""]
    for m in estimates:
        if m.grid is None or m.metric not in families(stored):
            continue
        lines += _family(m, "answers", f"### {m.metric}: each axis, averaged over the rest of the grid")
        lines += _interactions(m)
        lines += _family(m, "detail", f"### {m.metric}: every adjacent pair of cells",
                         "The same model, one contrast per pair of cells that differ in one axis. With few "
                         "seeds per cell these intervals are wide: the averaged answers above carry the evidence.")
    return lines


def families(stored: Stored) -> tuple[str, ...]:
    """The metrics whose effects the page lays out: accuracy, and macro-F1 when it is the study's own metric
    or the task has more than two classes (every metric's are in the CSV tables)."""
    return ("accuracy", "macro-F1") if stored.metric == "val_f1" or not stored.binary else ("accuracy",)


def _family(m: MetricEstimates, which: str, title: str, note: str = "") -> list[str]:
    table = getattr(m.grid, which)
    lines = [title, ""] + ([note, ""] if note else [])
    if table.empty:
        return lines + ["No axis has two levels with runs in both: nothing to compare.", ""]
    own = table["lo"].notna().any()  # an adaptive study's looks leave no single-analysis interval or p
    note = [] if own else ["Adaptive seeds: each interval is the intersection of its simultaneous intervals over the "
                           "looks (section 8); a single analysis's own interval and p would not hold after several "
                           "looks, so none is shown.", ""]
    return lines + note + md_table(*family_rows(m, which))


def family_rows(m: MetricEstimates, which: str) -> tuple[list[str], list[list[str]]]:
    """One family's table as the page shows it: (header, rows), for markdown and LaTeX alike."""
    table = getattr(m.grid, which)
    searched = "search_share" in table and (table["se_search"] > 0).any()
    own = table["lo"].notna().any()
    rows = [[_name(r), str(int(round(r.seeds))) if np.isfinite(r.seeds) else "n/a", effect(r.estimate, r.lo_sim, r.hi_sim),
             *([effect(r.estimate, r.lo, r.hi)] if own else []), f"{num(r.se_seed)} / {num(r.se_test)}"
             + (f" / {num(r.se_search)}" if searched else ""), *([num(r.search_share, ".0%")] if searched else []),
             num(r.df, ".0f"), *([pval(r.p_family)] if own else []), num(getattr(r, "p_run", math.nan), ".2f"),
             r.verdict] for r in table.itertuples()]
    header = ["step", "runs/cell", "Δ [simultaneous]", *(["Δ [own 95%]"] if own else []),
              "se seed / test" + (" / search" if searched else ""), *(["search share"] if searched else []), "df",
              *(["p (family)"] if own else []), "P(run b > run a)", "verdict"]
    return header, rows


def _interactions(m: MetricEstimates) -> list[str]:
    table = m.grid.interactions
    table = table[table["df1"] > 0] if not table.empty else table  # pairs that never vary together: nothing to test
    if table.empty:
        return []
    rows = [[f"{r.axis_a} × {r.axis_b}", num(r.F, ".2f"), f"{int(r.df1)}, {num(r.df2, '.1f')}", pval(r.p),
             pval(r.p_holm), "yes" if r.detected else "no"] for r in table.itertuples()]
    return [f"Interactions ({m.metric}): does one axis's effect depend on another's level? Wald F test, "
            "Holm across pairs; a detected one adds that axis's steps per level to the answers.", ""] + \
        md_table(["axes", "F", "df", "p", "p (Holm)", "detected"], rows)


def _name(r) -> str:
    where = f" at {r.context}" if r.context else ""
    return f"{r.axis} {r.level_a} → {r.level_b}{where}"


def _groups(stored: Stored) -> str:
    column = stored.study.data.group_column
    return f"`{column}`" if column else "example (the study has no group column)"


def frame(estimates: list[MetricEstimates], which: str) -> pd.DataFrame:
    """One family of every metric as one table, for the CSV files."""
    parts = [getattr(m.grid, which).assign(metric=m.metric) for m in estimates if m.grid is not None
             and not getattr(m.grid, which).empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
