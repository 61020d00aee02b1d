"""Section 1: every cell's metrics with bounded intervals, the majority baseline, and the runs behind them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.stats import paired
from harness.stats.bands import clustered_accuracy
from harness.evidence import Evidence
from harness.stats.metrics import macro_f1
from harness.report.effects import MetricEstimates
from harness.report.format import effect, estimate, label, md_table, num, plural


from harness.report.frames import Stored
from harness.evidence import from_records
from harness.stats import grid_model, selection


CHOSEN = "the chosen cell (the cheapest of those validation cannot tell from the best)"


def best_cell(summary: pd.DataFrame) -> str | None:
    """The cell the report speaks of when it needs one: of the cells validation cannot tell from the best
    (``tied``: stats.selection.tied_with_best), the cheapest per run by the cost model, then the best by
    validation. Chosen without the test set, and never by a coin flip between tied cells."""
    kept = summary.dropna(subset=["val_mean", "accuracy_mean"])
    if kept.empty:
        return None
    tied = kept["tied"].fillna(False).to_numpy(dtype=bool) if "tied" in kept else np.zeros(len(kept), bool)
    if not tied.any():  # no validation predictions stored (an older store): the best mean alone
        tied = (kept["val_mean"] == kept["val_mean"].max()).to_numpy()
    chosen = selection.cheapest(tied, kept["cost_per_run"].to_numpy(dtype=float) if "cost_per_run" in kept
                                else np.zeros(len(kept)), kept["val_mean"].to_numpy(dtype=float))
    return kept.iloc[chosen]["cell"]


def tied_cells(stored: Stored) -> dict[str, bool]:
    """cell id -> whether validation cannot tell it from the best (stats.selection, at the study's alpha),
    from every kept run's restored epoch on the validation set."""
    if not stored.splits.get("val_labels"):
        return {}
    ev = from_records(stored.records, stored.splits, stored.axes, source="validation")
    if not ev.kept.any():
        return {}
    comp = grid_model.accuracy_components(ev.Y, ev.groups, replicates=ev.replicates, seeds=ev.seeds)
    tied = selection.tied_with_best(comp, stored.analysis.alpha)
    return dict(zip(ev.cells["cell"], tied.tolist()))

COLUMNS = {"accuracy": "accuracy", "macro-F1": "f1", "ROC-AUC": "auc"}


def summary(stored: Stored, runs: pd.DataFrame, estimates: list[MetricEstimates]) -> pd.DataFrame:
    """Per cell in grid order: runs kept and left out, each metric's mean and interval, cost, parameters."""
    seconds = pd.Series({r.cell: 0.0 for r in stored.records})
    for r in stored.records:
        if r.trained:
            seconds[r.cell] += r.seconds or 0.0
    rows = []
    for cell, group in runs.groupby("cell", sort=False):
        kept = group[group["flag"].isna()]
        first = group.iloc[0]
        row = {"cell": cell, "label": label(cell), **{a.column: first[a.column] for a in stored.axes},
               "runs": len(group), "seeds": len(kept), "excluded": _flags(group),
               "best_epoch": kept["best_epoch"].median() if len(kept) else math.nan,
               # the report's choices (the best cell, the cheapest good one, the best curve) use this,
               # never the test set
               "val_mean": kept["val_accuracy"].astype(float).mean() if len(kept) else math.nan,
               "trainable_params": first["trainable_params"], "seconds_per_run": group.loc[group["trained"], "seconds"].mean(),
               "cost_per_run": group.loc[group["trained"], "cost"].mean(),
               "cost_modelled": bool(group.loc[group["trained"], "modelled"].all()),
               "seconds_total": seconds.get(cell, 0.0), "lr": first["lr"], "batch_size": first["batch_size"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    tied = tied_cells(stored)
    table["tied"] = [tied.get(c, False) for c in table["cell"]] if tied else False
    for m in estimates:
        col = COLUMNS[m.metric]
        if m.grid is None:
            table[[f"{col}_mean", f"{col}_lo", f"{col}_hi"]] = math.nan
            continue
        per = m.grid.cells.assign(cell=_ids(stored, m.grid.cells)).set_index("cell")
        for part, source in (("mean", "mean"), ("lo", "lo"), ("hi", "hi"), ("se_seed", "se_seed"),
                             ("se_test", "se_test"), ("se_search", "se_search"), ("search_share", "search_share"),
                             ("searches", "searches")):
            table[f"{col}_{part}"] = table["cell"].map(per[source])
    return table


def _ids(stored: Stored, cells: pd.DataFrame) -> list[str]:
    from harness.study.axes import cell_id

    return [cell_id(stored.axes, dict(zip(cells.columns, row))) for row in cells.itertuples(index=False)]


def _flags(group: pd.DataFrame) -> str:
    counts = group["flag"].value_counts()
    return ", ".join(f"{counts[k]} {k}" for k in ("failed", "diverged", "collapsed", "pruned", "untuned")
                     if k in counts) or "none"


def baseline(stored: Stored, ev: Evidence) -> dict:
    """Always answering the training pool's majority class: accuracy with a clustered interval, macro-F1,
    and every cell against it (``paired``: harness.stats.paired.against_key, one row per cell with runs)."""
    if not len(ev.labels):
        return {}
    cls = stored.splits.get("train_majority")
    if cls is None:  # an older store: the majority of the evaluated examples
        cls = int(np.bincount(ev.labels.astype(int)).argmax())
    right = (ev.labels == cls).astype(float)
    out = clustered_accuracy(right, ev.groups)
    a = stored.analysis
    vs = paired.against_key(ev.Y, right, ev.groups, a.alpha, a.smallest_effect) if ev.kept.any() else pd.DataFrame()
    if not vs.empty:
        vs = vs.assign(cell=ev.cells["cell"].to_numpy()[vs["cell"].to_numpy()],
                       beats=vs["lo_sim"].to_numpy() > 0)
    return out | {"class": stored.class_names[cls] if cls < len(stored.class_names) else str(cls),
                  "f1": macro_f1(ev.labels.astype(int), np.full(len(ev.labels), cls), len(stored.class_names)),
                  "paired": vs, "level": 1 - a.alpha}


def baseline_sentence(base: dict) -> str:
    """How many cells do not clearly beat the majority class, compared with it example by example."""
    vs = base.get("paired", pd.DataFrame())
    if vs.empty:
        return f"always answering the majority class ({base['class']}) scores {base['accuracy']:.3f}"
    below = vs[~vs["beats"]]
    said = (f"always answering the majority class ({base['class']}) scores {base['accuracy']:.3f}; compared with it "
            f"example by example (each cell's correctness minus the baseline's on the same sentences, seed variance "
            f"and test variance clustered by group, simultaneous {base['level']:.0%} over the {len(vs)} cells), ")
    if below.empty:
        return said + "every cell clearly beats it"
    return said + (f"{len(below)} of {len(vs)} cells do not clearly beat it ("
                   + ", ".join(f"{label(r.cell)} {effect(r.estimate, r.lo_sim, r.hi_sim)}" for r in below.itertuples())
                   + ")")


# --- the page ---------------------------------------------------------------------------------

def render(stored: Stored, table: pd.DataFrame, base: dict) -> list[str]:
    a = stored.analysis
    where = "test set" if stored.source == "test" else \
        "validation set (no test set: each run's restored epoch was chosen on it, so these are optimistic)"
    lines = ["## 1. Cells", "",
             f"Each cell's mean over its kept evaluation seeds on the {where}, with its {1 - a.alpha:.0%} interval: "
             "seed-to-seed and test-set variance combined, on the logit scale so that it stays in [0, 1] (see "
             "*How to read this report*). Runs that failed, diverged or collapsed to one class (judged on their "
             "validation predictions) are counted under *excluded* and kept out of every estimate. Seconds: the "
             "mean training time of an evaluation run, and the cell's total with its tuning.", ""]
    header, rows = table_rows(stored, table, base)
    lines += md_table(header, rows)
    if base:
        lines += [f"The last row is the baseline every model must beat: always answering the majority class of the "
                  f"training pool ({base['class']}) scores {base['accuracy']:.3f} on these {base['n']} examples "
                  f"({base['groups']} groups; the interval is clustered, design effect {num(base['deff'], '.1f')}). "
                  "That accuracy is itself an estimate from these examples (their groups move it as a whole), so a "
                  "cell's interval lying above it is not the comparison; each cell is compared with it example by "
                  "example instead: *− majority* is the cell's accuracy minus the baseline's on the same "
                  "examples, with seed variance and the clustered test variance of the per-example difference, "
                  "simultaneous over the cells (max-t); a cell clearly beats the baseline when that interval lies "
                  "above 0 (`tables/baseline.csv`).", ""]
    if not stored.binary:
        lines += [f"ROC-AUC is given for binary tasks only; this one has {len(stored.class_names)} classes.", ""]
    return lines


def table_rows(stored: Stored, table: pd.DataFrame, base: dict) -> tuple[list[str], list[list[str]]]:
    """The cells table as the page shows it: (header, rows), for markdown and LaTeX alike."""
    metrics = ["accuracy", "f1"] + (["auc"] if stored.binary and table.get("auc_mean", pd.Series()).notna().any() else [])
    names = {"accuracy": "accuracy", "f1": "macro-F1", "auc": "ROC-AUC"}
    header = ["cell", "seeds", "excluded"] + [names[m] for m in metrics] + ["best epoch", "trainable params", "s/run",
                                                                             "cell s", "lr", "batch"]
    vs = base.get("paired", pd.DataFrame()).set_index("cell") if base and not base["paired"].empty else None
    if vs is not None:
        header.insert(3 + len(metrics), f"− majority [sim. {base['level']:.0%}]")
    rows = []
    for r in table.itertuples():
        row = [r.label, f"{r.seeds}/{r.runs}", r.excluded] + \
            [estimate(getattr(r, f"{m}_mean"), getattr(r, f"{m}_lo"), getattr(r, f"{m}_hi")) for m in metrics]
        if vs is not None:
            row.append(effect(vs.loc[r.cell, "estimate"], vs.loc[r.cell, "lo_sim"], vs.loc[r.cell, "hi_sim"])
                       if r.cell in vs.index else "n/a")
        rows.append(row + [num(r.best_epoch, "g"), f"{int(r.trainable_params):,}" if pd.notna(r.trainable_params)
                           else "n/a", num(r.seconds_per_run, ".1f"), num(r.seconds_total, ".1f"), num(r.lr, ".2e"),
                           str(r.batch_size)])
    if base:
        rows.append([f"*majority class ({base['class']})*", "-", "-", estimate(base["accuracy"], base["lo"], base["hi"]),
                     num(base["f1"])] + ["0.500"] * (len(metrics) == 3) + ["-"] * (6 + (vs is not None)))
    return header, rows


def render_runs(stored: Stored, runs: pd.DataFrame) -> list[str]:
    """The appendix: every evaluation run."""
    lines = ["## Appendix: every evaluation run", "",
             "Accuracy of each run with its Wilson 95% interval over the evaluated examples (which treats them as "
             "independent: one run's own noise, not the cell's). `tables/runs.csv` holds these rows and "
             "`tables/predictions.csv.gz` every run's prediction for every example.", ""]
    rows = [[label(r.cell), str(r.seed), r.flag if isinstance(r.flag, str) else r.status, _wilson(r), num(r.f1),
             num(r.best_epoch, "g"), num(r.stopped_epoch, "g"), num(r.seconds, ".1f")] for r in runs.itertuples()]
    lines += md_table(["cell", "seed", "status", "accuracy [Wilson 95%]", "macro-F1", "best epoch", "stopped", "s"],
                      rows)
    flagged = runs[runs["flag"].notna()]
    if len(flagged):
        lines += [f"Left out of the estimates ({plural(len(flagged), 'run')}): "
                  + "; ".join(f"{label(r.cell)} seed {r.seed} ({r.flag})" for r in flagged.itertuples()) + ".", ""]
    return lines


def _wilson(r) -> str:
    return "n/a" if math.isnan(r.accuracy) else f"{r.accuracy:.3f} [{r.wilson_lo:.3f}, {r.wilson_hi:.3f}] of {r.n}"


def predictions(stored: Stored, ev: Evidence) -> pd.DataFrame:
    """Every evaluation run's prediction for every evaluated example (long form), to recompute any test."""
    prefix = "test" if ev.source == "test" else "val"
    rows_of = stored.splits.get(f"{prefix}_rows") or list(range(len(ev.labels)))
    frames = []
    for r in stored.evals:
        from harness.evidence import predictions as preds

        p = preds(r, ev.source)
        if p is None or len(p) != len(ev.labels):
            continue
        prob = r.test.get("prob") if ev.source == "test" else None
        frames.append(pd.DataFrame({"cell": r.cell, "seed": r.seed, "status": r.status, "split": ev.source,
                                    "row": rows_of, "group": ev.groups, "label": ev.labels.astype(int),
                                    "pred": p.astype(int), "correct": (p == ev.labels).astype(int),
                                    **({"prob_last_class": prob} if prob and len(prob) == len(p) else {})}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
