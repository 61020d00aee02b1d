"""Answers at a glance: one sentence per question, each an effect, its interval and its verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.report import calibration, cells, overfitting
from harness.report.effects import MetricEstimates
from harness.report.format import effect, label, pval
from harness.report.frames import Stored
from harness.report.parts import Parts
from harness.stats.verdicts import sidak
from harness.study import expand


def render(stored: Stored, parts: Parts) -> list[str]:
    return ["## Answers at a glance", ""] + findings(stored, parts)


def findings(stored: Stored, parts: Parts) -> list[str]:
    """The answers as a block of their own (``findings.md``): the README's findings are this block verbatim."""
    a = stored.analysis
    acc: MetricEstimates = parts.accuracy
    where = "test" if stored.source == "test" else "validation"
    lines = [f"Changes in {where} accuracy from one model of all "
             f"{int(acc.grid.cells['runs'].sum()) if acc.grid is not None else 0} "
             f"kept evaluation runs; each interval is a simultaneous {1 - a.alpha:.0%} interval over all the answers "
             f"({_sources(parts)}; see *How to read this report*); δ = {a.smallest_effect:g}. "
             + search_note(stored, parts) + reach_note(stored, acc), ""]
    if acc.grid is not None:
        lines += [f"- {s}" for s in axis_sentences(stored, acc)]
        lines += [f"- {s}" for s in interaction_sentences(stored, acc)]
    lines += [f"- **Was a late peak real?** {overfitting.late_peak_sentence(parts.overfitting, a.alpha)}"]
    lines += [f"- **Which metrics tell the truth?** {metrics_sentence(stored, parts)}"]
    lines += [f"- {s}" for s in parts.lab_sentences]
    return lines + [""]


def reach_note(stored: Stored, m: MetricEstimates) -> str:
    """Whether 'equivalent within ±δ' is within reach of this test set at all, and the margin that is: with
    unlimited seeds an interval keeps the test part's (and the searches') width, crit * se."""
    table = m.grid.answers if m.grid is not None else pd.DataFrame()
    if table.empty or "se_test" not in table:
        return ""
    crit = sps.norm.isf(sidak(stored.analysis.alpha, len(table)) / 2)  # the family's level, df unlimited
    floor = crit * np.sqrt(table["se_test"] ** 2 + table.get("se_search", 0.0) ** 2)
    delta, best = stored.analysis.smallest_effect, float(floor.min())
    if best < delta:
        return ""
    return (f" With this test set no answer can be called *equivalent* within ±{delta:g}: even with unlimited seeds "
            f"its test part keeps each simultaneous interval at least ±{best:.3f} wide, so ±{best:.3f} is the "
            f"smallest margin it could reach (±{float(floor.median()):.3f} for the median answer).")


def _sources(parts: Parts) -> str:
    """The variance the answers' intervals carry: the searches' too where a cell ran two searches or more."""
    searches = parts.summary.get("accuracy_searches", pd.Series(dtype=float)).fillna(0)
    return "seed, search and test-set variance" if (searches >= 2).any() else "seed and test-set variance"


def search_note(stored: Stored, parts: Parts) -> str:
    """What the intervals say about the hyperparameter search, and the cells whose search failed."""
    summary = parts.summary
    searches = summary["accuracy_searches"].fillna(0).astype(int) if "accuracy_searches" in summary else \
        pd.Series(0, index=summary.index)
    kept = searches[searches > 0]
    if not stored.study.search.trials and not any(c.study.search.trials for c in expand(stored.study)):
        note = "No hyperparameter was tuned: every cell ran on fixed parameters."
    elif len(kept) and (kept >= 2).all():
        answers = parts.accuracy.grid.answers if parts.accuracy.grid is not None else pd.DataFrame()
        share = f" (a median {answers['search_share'].median():.0%} of these answers' variance)" \
            if "search_share" in answers and answers["search_share"].notna().any() else ""
        note = (f"Each cell ran {kept.min()}{'' if kept.min() == kept.max() else f' to {kept.max()}'} independent "
                f"hyperparameter searches, each evaluated on the same seeds, so the intervals include the searches' "
                f"luck{share}.")
    elif (kept >= 2).any():
        note = (f"{int((kept >= 2).sum())} of {len(kept)} cells ran two searches or more, and their intervals include "
                "the searches' luck; the others' are conditional on the hyperparameters their one search chose.")
    else:
        note = ("The intervals are conditional on the hyperparameters each cell's one search chose: a search run again "
                "would have chosen others, and that luck is not in them (`search.replicates = 2` or more includes it).")
    failed = parts.evidence.untuned
    if failed:
        names = "; ".join(f"{label(parts.evidence.cells['cell'][c])} ({why})" for c, why in sorted(failed.items()))
        note += f" Untuned cells, kept out of every answer: {names}."
    return note


def axis_sentences(stored: Stored, m: MetricEstimates) -> list[str]:
    """Per axis with two levels or more: each adjacent step averaged over the contexts that have every level of
    its sequence (like with like; one sequence per such set of contexts), with its verdict and what it covers."""
    table = m.grid.answers
    out = []
    for axis in stored.axes:
        averaged = (table["context"] == "") | table["context"].str.startswith("over ") if not table.empty else None
        mine = table[(table["axis"] == axis.column) & averaged] if not table.empty else table
        if len(axis.levels) < 2:
            continue
        if mine.empty:
            out.append(f"**{axis.question}** Not answered: no two of its levels have kept runs in a shared context.")
            continue
        parts = []
        for _, rows in mine.groupby("context", sort=False):
            steps = "; ".join(f"{_step(axis, r)}: {effect(r.estimate, r.lo_sim, r.hi_sim)}, {r.verdict}"
                              for r in rows.itertuples())
            parts.append(f"averaged over {rows['covers'].iloc[0]}: {steps}" if "covers" in rows else steps)
        out.append(f"**{axis.question}** " + ". ".join(p[0].upper() + p[1:] for p in parts) + ".")
    return out


def _step(axis, r) -> str:
    names = {"data_size": "training examples", "epochs": "epochs", "freeze": "frozen blocks"}
    return f"{names.get(axis.column, axis.column)} {r.level_a} → {r.level_b}"


def interaction_sentences(stored: Stored, m: MetricEstimates) -> list[str]:
    """One sentence for every detected interaction; the steps per level are in section 2."""
    inter = m.grid.interactions
    found = inter[inter["detected"]] if not inter.empty else inter
    if found.empty:
        tested = inter[inter["df1"] > 0] if not inter.empty else inter
        return [f"**Does one axis's effect depend on another's level?** No interaction detected "
                f"({len(tested)} pairs of axes tested, Holm)."] if len(tested) else []
    pairs = "; ".join(f"{r.axis_a} × {r.axis_b} (F = {r.F:.2f}, Holm-corrected p {_p(r.p_holm)})"
                      for r in found.itertuples())
    return [f"**Does one axis's effect depend on another's level?** Yes: {pairs}. The averages above hide "
            "that: section 2 gives each of these steps at every level of the other axis."]


def _p(p: float) -> str:
    text = pval(p)
    return text.replace("<", "< ") if text.startswith("<") else f"= {text}"


def metrics_sentence(stored: Stored, parts: Parts) -> str:
    summary, base = parts.summary, parts.baseline
    kept = summary.dropna(subset=["accuracy_mean"])
    said = []
    if base and len(kept):
        text = cells.baseline_sentence(base)  # paired per example with the baseline, simultaneous over the cells
        said.append(text[0].upper() + text[1:])
    for column, name in (("f1_mean", "macro-F1"), ("auc_mean", "ROC-AUC")):
        if column in kept and kept[column].notna().sum() >= 3:
            rho = sps.spearmanr(kept["accuracy_mean"], kept[column], nan_policy="omit").statistic
            said.append(f"{name} ranks the cells {'as' if rho >= 0.9 else 'unlike'} accuracy does (Spearman ρ = "
                        f"{rho:.2f})")
    text = calibration.sentence(parts.calibration, summary)
    return "; ".join(said) + (". " + text if text else ".")
