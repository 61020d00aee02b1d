"""``python -m harness compare A B``: two results folders on the same test set, cell by cell, B minus A.

Two models, two commits or two data versions: each cell that both folders ran (the same cell id)
is one contrast of the grid model (harness.stats.grid_model) over the runs of both folders at once.
Runs with the same seed number are paired; the test part comes from the per-example correctness on
the same test examples, clustered by the group column; the intervals are simultaneous over the
matched cells (max-t), the verdicts the report's. Folders that share no seed number are compared
unpaired (``contrast``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.evidence import from_records
from harness.report.format import effect, label, md_table, num, pval
from harness.report.frames import Stored
from harness.stats import contrasts, grid_model, labelling, verdicts


@dataclass(frozen=True)
class Comparison:
    a: Stored
    b: Stored
    table: pd.DataFrame  # one row per matched cell: both sides' runs and means, the contrast, its verdict
    paired: str  # how the seeds were paired
    only_a: list[str]  # cells with kept runs in one folder only
    only_b: list[str]


def same_test_set(a: Stored, b: Stored) -> None:
    """Refuse two folders whose test examples or labels differ (one line)."""
    for name, stored in (("A", a), ("B", b)):
        if not stored.splits.get("test_labels"):
            raise HarnessError(f"{stored.results.dir}: no test set (data.test_fraction = 0); compare needs both "
                               "folders tested on the same test set")
    for key in ("test_rows", "test_labels"):
        if a.splits.get(key) != b.splits.get(key):
            what = "rows" if key == "test_rows" else "labels"
            raise HarnessError(f"{b.results.dir}: its test set differs from {a.results.dir}'s (other test {what}: "
                               "another split, data file, threshold or audit); compare needs the same test examples")


def compute(a: Stored, b: Stored) -> Comparison:
    same_test_set(a, b)
    ev_a, ev_b = (from_records(s.records, s.splits, s.axes) for s in (a, b))
    for stored, ev in ((a, ev_a), (b, ev_b)):
        if ev.source != "test":
            raise HarnessError(f"{stored.results.dir}: no evaluation run was tested; compare needs test predictions")
    have_a = {c: i for i, c in enumerate(ev_a.cells["cell"]) if ev_a.kept[i].any()}
    have_b = {c: i for i, c in enumerate(ev_b.cells["cell"]) if ev_b.kept[i].any()}
    matched = [c for c in have_a if c in have_b]
    if not matched:
        raise HarnessError(f"{b.results.dir}: no cell in common with {a.results.dir} (cells are matched by id, e.g. "
                           f"'{next(iter(have_a), 'n=128|ep=3|freeze=5')}'); nothing to compare")
    columns_a, columns_b = (list(zip(ev.replicates.tolist(), ev.seeds.tolist())) for ev in (ev_a, ev_b))
    table, paired = contrast(ev_a.Y[[have_a[c] for c in matched]], columns_a, ev_b.Y[[have_b[c] for c in matched]],
                             columns_b, ev_a.groups, a.analysis.alpha, a.analysis.smallest_effect)
    return Comparison(a, b, table.assign(cell=matched)[["cell", *table.columns]], paired,
                      sorted(set(have_a) - set(have_b)), sorted(set(have_b) - set(have_a)))


def contrast(Ya: np.ndarray, columns_a, Yb: np.ndarray, columns_b, groups: np.ndarray, alpha: float = 0.05,
             delta: float = 0.01) -> tuple[pd.DataFrame, str]:
    """B minus A for M matched cells: Ya (M, Sa, N), Yb (M, Sb, N) per-example correctness (NaN: a run
    left out), the (search, seed) of each column (or plain seed numbers: one search), the test examples'
    groups. Returns (one row per cell, how seeds were paired). Several searches per cell add their luck
    to the intervals, as in the report.

    Shared seed numbers: one two-way model of both sides' runs (seeds paired), max-t over the cells.
    No seed in common: the sides' seeds are independent, so each difference is unpaired (both sides'
    run-to-run variance plus the clustered test part, harness.stats.labelling.difference) at Sidak's
    level over the cells.
    """
    columns_a, columns_b = ([c if isinstance(c, tuple) else (0, c) for c in cols] for cols in (columns_a, columns_b))
    M, seeds_a, seeds_b = len(Ya), sorted({s for _, s in columns_a}), sorted({s for _, s in columns_b})
    runs_a, runs_b = (np.isfinite(Y[..., 0]).sum(axis=1) for Y in (Ya, Yb))
    means_a, means_b = ([Y[m][np.isfinite(Y[m][:, 0])].mean() for m in range(M)] for Y in (Ya, Yb))
    table = pd.DataFrame({"runs_a": runs_a, "runs_b": runs_b, "accuracy_a": means_a, "accuracy_b": means_b})
    if not set(seeds_a) & set(seeds_b):
        level = verdicts.sidak(alpha, M)
        rows = []
        for m in range(M):
            a, b = (Y[m][np.isfinite(Y[m][:, 0])] for Y in (Ya, Yb))
            sim, own = labelling.difference(b, a, groups, 1 - level, delta), labelling.difference(b, a, groups, 1 - alpha, delta)
            rows.append({"estimate": sim["difference"], "lo_sim": sim["lo"], "hi_sim": sim["hi"], "lo": own["lo"],
                         "hi": own["hi"], "se_seed": math.sqrt(max(sim["var_seed"], 0.0)),
                         "se_test": math.sqrt(max(sim["var_test"], 0.0)), "df": sim["df"], "p_family": math.nan,
                         "verdict": sim["verdict"]})
        return pd.concat([table, pd.DataFrame(rows)], axis=1), (
            f"the folders share no seed (A: {', '.join(map(str, seeds_a))}; B: {', '.join(map(str, seeds_b))}), so "
            f"each difference is unpaired: both sides' run-to-run variance plus the test part, at Sidak's level "
            f"over the {M} cells")
    columns = sorted(set(columns_a) | set(columns_b))
    Y = np.full((2 * M, len(columns), Ya.shape[2]), np.nan)
    Y[:M, [columns.index(c) for c in columns_a]] = Ya
    Y[M:, [columns.index(c) for c in columns_b]] = Yb
    comp = grid_model.accuracy_components(Y, groups, replicates=np.array([r for r, _ in columns]),
                                          seeds=np.array([s for _, s in columns]))
    weights = [np.eye(2 * M)[M + m] - np.eye(2 * M)[m] for m in range(M)]
    family = contrasts.family(comp, [contrasts.Contrast("folder", "A", "B", str(m), w) for m, w in enumerate(weights)],
                              alpha, delta)
    if not family.empty:
        family = family.assign(m=family["context"].astype(int)).set_index("m").drop(
            columns=["axis", "level_a", "level_b", "context"])
        table = table.join(family)
    return table, "one two-way model of both folders' runs, runs with the same seed number paired; max-t over the cells"


def _describe(stored: Stored) -> str:
    m, study = stored.manifest, stored.study
    data = m.get("data") or {}
    sha = f", data sha256 {data['sha256'][:12]}…" if data.get("sha256") else ""
    return (f"`{stored.results.dir}`: study `{study.name}`, model `{study.model.name}`, commit "
            f"`{str(m.get('git_commit', 'unknown'))[:12]}`{sha}")


def render(comp: Comparison) -> list[str]:
    a, b, table = comp.a, comp.b, comp.table
    alpha, delta = a.analysis.alpha, a.analysis.smallest_effect
    groups = a.study.data.group_column
    lines = ["## B against A, cell by cell", "",
             f"- A: {_describe(a)}", f"- B: {_describe(b)}", "",
             f"Test accuracy of B minus A on the same {len(a.splits['test_labels'])} test examples, for each cell both "
             f"folders ran (the same cell id): {comp.paired}. The test part comes from the "
             "per-example correctness of both sides on the same examples, clustered by "
             + (f"`{groups}`" if groups else "example") + f". Simultaneous {1 - alpha:.0%} intervals over the "
             f"{len(table)} matched cells; *better*/*worse* when the interval excludes 0, *equivalent* inside "
             f"±{delta:g}, else *undecided*. Each folder's seeds are used as stored, at the full α.", ""]
    verdicts = table["verdict"].fillna("not estimable").str.split(r"[,:]").str[0] if "verdict" in table else \
        pd.Series(["not estimable"] * len(table))
    counts = verdicts.value_counts()
    lines += ["B is " + ", ".join(f"{w} in {counts[w]}" for w in ("better", "worse", "equivalent within ±" + f"{delta:g}",
                                                                    "undecided", "not estimable") if w in counts)
              + f" of {len(table)} cell(s).", ""]
    rows = []
    for r in table.itertuples():
        has = "estimate" in table and not math.isnan(getattr(r, "estimate", math.nan))  # estimable
        rows.append([label(r.cell), f"{r.runs_a}/{r.runs_b}", num(r.accuracy_a), num(r.accuracy_b),
                     effect(r.estimate, r.lo_sim, r.hi_sim) if has else "n/a",
                     effect(r.estimate, r.lo, r.hi) if has else "n/a",
                     f"{num(r.se_seed)} / {num(r.se_test)}" if has else "n/a",
                     num(r.df, ".0f") if has else "n/a", pval(r.p_family) if has else "n/a",
                     r.verdict if has else "not estimable: the two sides share no seed"])
    lines += md_table(["cell", "runs A/B", "accuracy A", "accuracy B", f"B − A [simultaneous {1 - alpha:.0%}]",
                       f"B − A [own {1 - alpha:.0%}]", "se seed / test", "df", "p (family)", "verdict"], rows)
    for side, cells in (("A", comp.only_a), ("B", comp.only_b)):
        if cells:
            lines += [f"Only in {side} (not compared): {', '.join(label(c) for c in cells)}.", ""]
    return lines


def write(comp: Comparison, out: Path) -> Path:
    """compare.md (the section) and compare.csv (its table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    comp.table.to_csv(out / "compare.csv", index=False)
    path = out / "compare.md"
    path.write_text("\n".join(render(comp)).rstrip() + "\n")
    return path


__all__ = ["Comparison", "compute", "render", "same_test_set", "write"]
