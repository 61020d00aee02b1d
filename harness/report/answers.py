"""Answers at a glance: one sentence per question, each an effect, its interval and its verdict."""

from __future__ import annotations

from scipy import stats as sps

from harness.report import calibration, cells, overfitting
from harness.report.effects import MetricEstimates
from harness.report.format import effect, label, pval
from harness.report.frames import Stored
from harness.report.parts import Parts


def render(stored: Stored, parts: Parts) -> list[str]:
    a = stored.analysis
    acc: MetricEstimates = parts.accuracy
    where = "test" if stored.source == "test" else "validation"
    lines = ["## Answers at a glance", "",
             f"Changes in {where} accuracy from one model of all "
             f"{int(acc.grid.cells['runs'].sum()) if acc.grid is not None else 0} "
             f"kept evaluation runs; each interval is a simultaneous {1 - a.alpha:.0%} interval over all the answers "
             f"(seed and test-set variance; see *How to read this report*); δ = {a.smallest_effect:g}.", ""]
    if acc.grid is not None:
        lines += [f"- {s}" for s in axis_sentences(stored, acc)]
        lines += [f"- {s}" for s in interaction_sentences(stored, acc)]
    lines += [f"- **Was a late peak real?** {overfitting.late_peak_sentence(parts.overfitting, a.alpha)}"]
    lines += [f"- **Which metrics tell the truth?** {metrics_sentence(stored, parts)}"]
    lines += [f"- {s}" for s in parts.lab_sentences]
    return lines + [""]


def axis_sentences(stored: Stored, m: MetricEstimates) -> list[str]:
    """Per axis with two levels or more: each adjacent step averaged over the grid, with its verdict."""
    table = m.grid.answers
    out = []
    for axis in stored.axes:
        rows = table[(table["axis"] == axis.column) & (table["context"] == "")] if not table.empty else table
        if len(axis.levels) < 2:
            continue
        if rows.empty:
            out.append(f"**{axis.question}** Not answered: no two of its levels have kept runs in a shared context.")
            continue
        steps = "; ".join(f"{_step(axis, r)}: {effect(r.estimate, r.lo_sim, r.hi_sim)}, {r.verdict}"
                          for r in rows.itertuples())
        out.append(f"**{axis.question}** {steps}.")
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
