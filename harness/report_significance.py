"""Section 2: each scientific axis compared level by level, seeds paired, and the verdicts.

The tests, corrections and power figures live in harness.stats; this module pairs the
runs across the grid (adjacent levels of one axis, the other two fixed) and lays out
the table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness import stats
from harness.report_format import md_table, num, pval, signed
from harness.report_frames import AXES, ORDER, Tables


def significance(evals: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Adjacent levels of each axis compared with the other two axes fixed, seeds paired; Holm over all."""
    good = evals[evals["flag"].isna() & evals["accuracy"].notna()]
    pooled = stats.pooled_sd(summary["accuracy_sd"], summary["seeds"])
    rows = []
    for axis in AXES:
        others = [a for a in AXES if a != axis]
        levels = sorted(evals[axis].unique(), key=ORDER[axis])
        contexts = sorted({tuple(c) for c in evals[others].itertuples(index=False)},
                          key=lambda c: tuple(ORDER[a](v) for a, v in zip(others, c)))
        for context in contexts:
            here = good[np.logical_and.reduce([good[a] == v for a, v in zip(others, context)])]
            cells = set(evals[np.logical_and.reduce([evals[a] == v for a, v in zip(others, context)])][axis])
            for lo, hi in zip(levels, levels[1:]):
                if lo in cells and hi in cells:
                    rows.append(_compare(here, axis, lo, hi, dict(zip(others, context))))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = stats.holm(table["p"])
    table["wilcoxon_holm"] = stats.holm(table["wilcoxon_p"])
    table["aso_eps"] = _aso(table)
    table["verdict"] = [stats.verdict(r) for r in table.to_dict("records")]
    table["seeds_needed"] = [_needed(r, pooled) for r in table.to_dict("records")]
    return table.drop(columns=["_a", "_b"])


def _compare(runs: pd.DataFrame, axis: str, lo, hi, context: dict) -> dict:
    """Level `lo` against `hi` of `axis` within one context, on the seeds kept in both cells."""
    pairs = runs[runs[axis] == lo].merge(runs[runs[axis] == hi], on="seed", suffixes=("_a", "_b"))
    row = {"axis": axis, "context": " ".join(f"{_short(a)}={v}" for a, v in context.items()), "level_a": lo,
           "level_b": hi, "_a": pairs["accuracy_a"].to_numpy(), "_b": pairs["accuracy_b"].to_numpy()}
    correct = (pairs["correct_a"].iloc[0], pairs["correct_b"].iloc[0]) if len(pairs) == 1 else (None, None)
    return row | stats.compare_pair(row["_a"], row["_b"], *correct)


def _short(axis: str) -> str:
    return {"data_size": "n", "epochs": "ep", "freeze": "freeze"}[axis]


def _aso(table: pd.DataFrame) -> list[float]:
    """ASO eps_min that the observed winner dominates, where both sides have enough seeds."""
    enough = [len(a) >= stats.ASO_MIN_SEEDS for a in table["_a"]]
    if not any(enough) or not stats.aso_available():  # deepsig loads only when a row can use it
        return [math.nan] * len(table)
    out = []
    for (a, b, diff), ok in zip(table[["_a", "_b", "diff"]].itertuples(index=False), enough):
        winner, loser = (b, a) if diff >= 0 else (a, b)
        out.append(stats.aso_eps(winner, loser, num_comparisons=sum(enough)) if ok else math.nan)
    return out


def _needed(row: dict, pooled: float) -> float:
    """Seeds for 80% power at the observed difference; one pair borrows the study's pooled seed sd."""
    if not (row["verdict"].startswith("too few") or row["test"] == "McNemar"):
        return math.nan
    dz = row["dz"] if row["n"] >= 2 else row["diff"] / (math.sqrt(2) * pooled) if pooled > 0 else math.nan
    needed = stats.seeds_needed(dz)
    return math.nan if needed is None else needed


def section_significance(t: Tables) -> list[str]:
    sig = t.significance
    lines = ["## 2. Significance by axis", ""]
    if sig.empty:
        return lines + ["No axis has two levels: nothing to compare.", ""]
    aso = (f"ASO (Dror et al. 2019, deepsig, {stats.ASO_ITERATIONS} bootstrap iterations, seed 0, Bonferroni "
           f"inside) runs where both cells have at least {stats.ASO_MIN_SEEDS} paired seeds; ε_min is for the "
           f"observed winner, below {stats.ASO_THRESHOLD} it almost stochastically dominates"
           + ("" if t.aso == "ran" else f" (no comparison here has {stats.ASO_MIN_SEEDS} pairs)")
           if t.aso != "unavailable" else "ASO unavailable: deepsig could not be imported, so that column is n/a")
    lines += [f"Each row compares two adjacent levels of one axis (A → B: more data, more epochs, fewer frozen "
              f"blocks) with the other two axes fixed, on {t.src} accuracy, paired by evaluation seed; excluded "
              f"runs drop their pair. Δ = B − A with its 95% t-interval. Primary test: paired t-test; with a "
              f"single pair, the exact McNemar test of the two models on the same examples (it ignores seed "
              f"variance). Holm-Bonferroni corrects across all {int(sig['p'].notna().sum())} primary tests of the "
              f"table and, separately, the Wilcoxon signed-rank tests (shown only where n pairs can reach "
              f"p < {stats.ALPHA}, i.e. n ≥ 6). Effect size: Cohen's d_z = mean(Δ) / sd(Δ). {aso}. The verdict "
              f"is for B against A at α = {stats.ALPHA} after correction; when the test had under "
              f"{stats.POWER:.0%} power at the observed effect it says *too few seeds* and the last column "
              f"estimates the seeds a paired t-test would need for {stats.POWER:.0%} power at that effect (a "
              f"single pair borrows the study's pooled seed sd; a planning figure, not evidence).", ""]
    rows = [[r.axis, r.context, f"{r.level_a} → {r.level_b}", str(r.n), num(r.mean_a), num(r.mean_b),
             f"{signed(r.diff)} [{num(r.diff_lo)}, {num(r.diff_hi)}]", r.test, pval(r.p), pval(r.p_holm),
             f"{pval(r.wilcoxon_p)} ({pval(r.wilcoxon_holm)})", num(r.dz, ".2f"), num(r.aso_eps, ".2f"), r.verdict,
             num(r.seeds_needed, ".0f")] for r in sig.itertuples()]
    lines += md_table(["axis", "with", "A → B", "pairs", "mean A", "mean B", "Δ [95% CI]", "test", "p",
                       "p (Holm)", "Wilcoxon p (Holm)", "d_z", "ASO ε_min", "verdict", "seeds needed"], rows)
    return lines
