"""Section 7: the lab's remaining questions: the whole data set (a learning-curve forecast), accuracy
against cost, whether binary labels are too coarse (accuracy by score band), and what the data
audit found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.stats import cost

from harness.stats import forecast
from harness.data import Findings
from harness.stats.bands import band_gap, band_of, by_band
from harness.report.cells import CHOSEN, best_cell
from harness.evidence import Evidence
from harness.report.format import effect, estimate, label, md_table, num
from harness.report.frames import Stored


@dataclass
class Lab:
    forecasts: list[dict] = field(default_factory=list)  # per combination of the other axes
    crossings: list[str] = field(default_factory=list)
    cost: dict = field(default_factory=dict)
    frontier: pd.DataFrame = field(default_factory=pd.DataFrame)
    bands: pd.DataFrame = field(default_factory=pd.DataFrame)  # the chosen cell's accuracy per score band
    band_gap: dict = field(default_factory=dict)  # near-neutral minus clear, with its interval
    audit: list[str] = field(default_factory=list)
    leak: dict = field(default_factory=dict)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)


def compute(stored: Stored, ev: Evidence, runs: pd.DataFrame, summary: pd.DataFrame) -> Lab:
    lab = Lab(summary=summary)
    lab.forecasts, lab.crossings = _forecasts(stored, runs)
    kept = summary.dropna(subset=["accuracy_mean", "val_mean", "cost_per_run"])
    if len(kept) >= 2:  # chosen on validation accuracy and the cost model; the test accuracies are reported beside
        lab.cost = _cheapest_tied(kept, best_cell(summary), stored.analysis.alpha)
        lab.frontier = cost.frontier(kept, "cost_per_run", "val_mean")
    lab.bands, lab.band_gap = _bands(stored, ev, summary)
    audit = stored.splits.get("audit")
    if audit:
        lab.audit = Findings(**audit).lines()
        lab.leak = _leak(ev, audit.get("test_rows_seen_in_training") or [])
    return lab


# --- the whole data set -----------------------------------------------------------------------

def _forecasts(stored: Stored, runs: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """A learning curve per combination of the axes other than data size, where it has 3 sizes or more."""
    pool = stored.splits.get("train_pool")
    a = stored.analysis
    sizes = [pool if s == "all" else s for s in a.forecast_sizes] or None
    others = [x.column for x in stored.axes if x.column != "data_size"]
    kept = runs[runs["flag"].isna() & runs["accuracy"].notna()].copy()
    if kept.empty:
        return [], []
    kept["data_size"] = [pool if s == "all" else int(s) for s in kept["data_size"]]
    out = []
    for combo, part in kept.groupby(others, sort=False):
        combo = combo if isinstance(combo, tuple) else (combo,)
        name = " ".join(f"{x.short}={v}" for x, v in zip([x for x in stored.axes if x.column in others], combo))
        if part["data_size"].nunique() < forecast.MIN_SIZES:
            continue
        result = forecast.forecast(part[["data_size", "seed", "accuracy"]], sizes, pool)
        out.append({"name": name, "combo": dict(zip(others, combo)), "forecast": result,
                    "backtest": forecast.backtest(part[["data_size", "seed", "accuracy"]])})
    return out, _crossings(stored, out)


def _crossings(stored: Stored, forecasts: list[dict]) -> list[str]:
    """Where the curves of two freezing depths, other axes equal, cross within 4x the largest size."""
    out = []
    for i, a in enumerate(forecasts):
        for b in forecasts[i + 1:]:
            differ = [k for k in a["combo"] if a["combo"][k] != b["combo"][k]]
            if differ != ["freeze"] or a["forecast"].curve is None or b["forecast"].curve is None:
                continue
            top = forecast.HORIZON * min(a["forecast"].curve.largest, b["forecast"].curve.largest)
            for n in forecast.crossings(a["forecast"].curve, b["forecast"].curve, 10, top):
                out.append(f"{a['name']} and {b['name']} cross near {n:,.0f} training examples")
    return out


# --- binary too coarse? -----------------------------------------------------------------------

def _bands(stored: Stored, ev: Evidence, summary: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The chosen cell's (cells.best_cell) accuracy on near-neutral and clear test examples, and the gap.

    Binary tasks cut from a score only: near-neutral is the band (-0.5, 0.5] of the score around the
    threshold (harness.stats.bands), the sentences whose binary label rests on a near-zero mean rating.
    """
    scores = stored.splits.get("test_scores") if ev.source == "test" else None
    best = best_cell(summary)
    if scores is None or best is None or not stored.binary or len(scores) != len(ev.labels):
        return pd.DataFrame(), {}
    c = list(ev.cells["cell"]).index(best)
    correct = ev.Y[c][ev.kept[c]]
    near = band_of(scores) == "near-neutral"
    level = 1 - stored.analysis.alpha
    return by_band(correct, scores, ev.groups, level=level).assign(cell=best), \
        band_gap(correct, near, ev.groups, level) | {"cell": best, "level": level}


def _leak(ev: Evidence, seen: list[int]) -> dict:
    """Accuracy of every cell on the test set without the rows whose text is also in the training pool."""
    if not seen or ev.source != "test":
        return {}
    keep = np.ones(len(ev.labels), bool)
    keep[seen] = False
    raw = np.nanmean(ev.Y, axis=2)
    clean = np.nanmean(ev.Y[:, :, keep], axis=2)
    return {"rows": len(seen), "table": pd.DataFrame({"cell": ev.cells["cell"], "raw": np.nanmean(raw, axis=1),
                                                      "deduplicated": np.nanmean(clean, axis=1)})}


# --- the answers and the page -----------------------------------------------------------------

def sentences(stored: Stored, lab: Lab, labelling: str = "") -> list[str]:
    """The section's answers; ``labelling`` is the binary against three-class sentence (harness.report.labelling)."""
    out = []
    full = [f for f in lab.forecasts if f["forecast"].curve is not None]
    if full:
        pool = stored.splits.get("train_pool")
        best = max(full, key=lambda f: _val_at_largest(stored, f, lab))
        row = best["forecast"].table.iloc[-1]
        tested = [f for f in lab.forecasts if "error" in f["backtest"]]
        check = ("backtests (the largest size hidden and predicted from the smaller ones): " + "; ".join(
            f"{f['name']} predicted {f['backtest']['predicted']:.3f} for the observed {f['backtest']['observed']:.3f} "
            f"({'inside' if f['backtest']['inside'] else 'outside'} its band)" for f in tested)) if tested \
            else "no backtest (it needs 4 data sizes or more)"
        far = "; beyond 4× the data fitted, so a long extrapolation" if row["beyond"] else ""
        out.append(f"**Would the whole data set help?** The best learning curve by validation ({best['name']}) forecasts "
                   f"{estimate(row['fitted'], row['lo'], row['hi'])} at {int(row['size']):,} training examples"
                   + (f" (the whole pool of {pool:,})" if pool and int(row['size']) == pool else "")
                   + f" against {best['forecast'].table['observed'].dropna().iloc[-1]:.3f} observed at the largest size"
                   f" (95% bootstrap band over seeds{far}); {check}.")
    elif lab.forecasts or stored.axes[0].levels:
        sizes = len(stored.axes[0].levels)
        out.append(f"**Would the whole data set help?** Not forecast: a learning curve needs 3 data sizes or more "
                   f"(this study has {sizes}).")
    if lab.cost:
        out.append(f"**Which cell is best, and which is cheapest among the best?** {_cost_sentence(lab.cost)}.")
    if lab.band_gap:
        g = lab.band_gap
        out.append(f"**Is binary too coarse?** On the {g['near']} near-neutral test sentences (score in (−0.5, 0.5]) "
                   f"{CHOSEN}, {label(g['cell'])}, is right {_band_text(lab, 'near-neutral')} "
                   f"of the time, against "
                   f"{_band_text(lab, 'clear')} on the {g['clear']} clear ones: {effect(g['gap'], g['lo'], g['hi'])} "
                   f"({g['level']:.0%} interval, seed and clustered test variance), {g['verdict']}. Where a sentence's binary "
                   "label rests on a near-zero mean rating the model does little better than chance."
                   + (f" {labelling}" if labelling else ""))
    elif labelling:
        out.append(f"**Is binary too coarse?** {labelling}")
    return out


def _cheapest_tied(kept: pd.DataFrame, chosen: str | None, alpha: float) -> dict:
    """The cells validation cannot tell from the best, and the cheapest of them by the cost model."""
    tied = kept[kept["tied"].fillna(False).astype(bool)] if "tied" in kept else kept.iloc[:0]
    if chosen is None or chosen not in set(kept["cell"]):
        return {}
    row = kept.set_index("cell").loc[chosen]
    return {"tied": list(tied["label"]), "chosen": row["label"], "alpha": alpha, "cost": float(row["cost_per_run"]),
            "modelled": bool(row["cost_modelled"]),
            "seconds": float(row["seconds_per_run"]), "val": float(row["val_mean"]),
            "test": float(row["accuracy_mean"]), "others_test": tied.set_index("label")["accuracy_mean"].to_dict()}


def _cost_sentence(result: dict) -> str:
    """The tie set by validation and the cheapest of it; the test accuracies beside, never chosen on."""
    tied = result["tied"]
    if len(tied) > 1:
        head = (f"Validation cannot tell {len(tied)} cells from the best ({', '.join(tied)}: a cell stays unless "
                f"another beats it, one-sided with Sidak at α = {result['alpha']:g} over its comparisons, so the set "
                f"holds the best with probability ≥ {1 - result['alpha']:.0%}); the cheapest of them per run is "
                f"{result['chosen']}")
    else:
        head = f"{result['chosen']} is better by validation than every other cell (one-sided, Sidak, α = {result['alpha']:g})"
    price = (f"{result['cost']:.1f} s per run on the reference machine by the cost model ({result['seconds']:.1f} s "
             "measured here)") if result["modelled"] else f"{result['seconds']:.1f} s per run as measured (the store " \
        "predates the cost model)"
    return f"{head}: {price}, validation {result['val']:.3f}, test {result['test']:.3f}"


def _val_at_largest(stored: Stored, f: dict, lab: Lab) -> float:
    """A curve's validation accuracy at its largest data size: how the best curve is chosen."""
    table = lab.summary
    part = table[np.logical_and.reduce([table[k].astype(str) == str(v) for k, v in f["combo"].items()])]
    sizes = [stored.splits.get("train_pool", 0) if n == "all" else n for n in part["data_size"]]
    return float(part.iloc[int(np.argmax(sizes))]["val_mean"]) if len(part) else -1.0


def _band_text(lab: Lab, band: str) -> str:
    row = lab.bands[lab.bands["band"] == band].iloc[0]
    return estimate(row["accuracy"], row["lo"], row["hi"])


def render(stored: Stored, lab: Lab, labelling: list[str] | None = None) -> list[str]:
    """The section; ``labelling``: the binary against three-class subsection, placed after the score bands."""
    lines = ["## 7. The whole data set, cost, labels and data", ""]
    lines += _render_forecasts(stored, lab) + _render_cost(lab) + _render_bands(lab) + (labelling or []) + \
        _render_audit(stored, lab)
    return lines


def _render_forecasts(stored: Stored, lab: Lab) -> list[str]:
    lines = ["### Forecast to more data", ""]
    if not lab.forecasts:
        return lines + ["No combination of the other axes has 3 data sizes or more: nothing to forecast.", ""]
    lines += ["A learning curve error(n) = α + η·n^γ (γ in [−1, 0]) fitted by weighted least squares to the kept runs "
              "of each combination of the other axes (Hoiem et al. 2021), with 95% bands from resampling the seeds; "
              "*band for new runs*: where the mean of as many fresh seeds would fall. Backtest: the largest size hidden "
              "and predicted from the rest.", ""]
    rows = []
    for f in lab.forecasts:
        t = f["forecast"].table
        for r in t[t["runs"] == 0].itertuples() if not t.empty else []:
            rows.append([f["name"], f"{r.size:,}", estimate(r.fitted, r.lo, r.hi), f"[{r.pred_lo:.3f}, {r.pred_hi:.3f}]",
                         "yes" if r.beyond else "no"])
    lines += md_table(["curve", "training examples", "forecast accuracy [band]", "band for new runs",
                       "beyond 4× the data"], rows)
    tests = []
    for f in lab.forecasts:
        bt = f["backtest"]
        tests.append([f["name"], str(bt.get("hidden")), num(bt.get("observed")), num(bt.get("predicted")),
                      num(bt.get("error"), "+.3f"), "yes" if bt.get("inside") else "no" if "inside" in bt else
                      bt.get("warning", "n/a")])
    lines += ["Backtest:", ""] + md_table(["curve", "hidden size", "observed", "predicted", "error", "inside band"],
                                          tests)
    warnings = sorted({w for f in lab.forecasts for w in f["forecast"].warnings})
    lines += [f"- {w}" for w in warnings + lab.crossings] + ([""] if warnings or lab.crossings else [])
    return lines


def _render_cost(lab: Lab) -> list[str]:
    if lab.frontier.empty:
        return []
    rows = [[r.label, num(r.val_mean), num(r.accuracy_mean), num(r.cost_per_run, ".1f"), num(r.seconds_per_run, ".1f"),
             f"{int(r.trainable_params):,}" if pd.notna(r.trainable_params) else "n/a"]
            for r in lab.frontier.itertuples()]
    said = _cost_sentence(lab.cost) if lab.cost else "No cell is chosen"
    return ["### Accuracy against cost", "", f"{said}. The cells no other cell beats on both "
            "validation accuracy and the cost model's seconds per run (the Pareto frontier, chosen on validation; "
            "test accuracy and the seconds measured on this machine shown beside, never chosen on):", ""] + \
        md_table(["cell", "validation accuracy", "test accuracy", "cost s/run", "measured s/run", "trainable params"],
                 rows)


def _render_bands(lab: Lab) -> list[str]:
    if lab.bands.empty:
        return []
    rows = [[r.band, str(r.n), str(r.groups), estimate(r.accuracy, r.lo, r.hi), num(r.deff, ".1f")]
            for r in lab.bands.itertuples()]
    return ["### Accuracy by score band", "",
            f"{CHOSEN[0].upper() + CHOSEN[1:]}, {label(lab.band_gap['cell'])}, on test sentences by "
            "the raters' mean score: near-neutral (|score| ≤ 0.5) against clear; intervals clustered by group.", ""] + \
        md_table(["band", "examples", "groups", "accuracy [95%]", "design effect"], rows)


def _render_audit(stored: Stored, lab: Lab) -> list[str]:
    lines = ["### The data", ""]
    threshold = stored.splits.get("on_threshold")
    if threshold:
        lines += [f"- Labels: {threshold['sentence']}"]
    lines += [f"- Audit: {line}" for line in lab.audit] or ["- No audit is stored for this data (an older store)."]
    if lab.leak:
        table = lab.leak["table"]
        lines += ["", f"{lab.leak['rows']} test rows have their text in the training pool; accuracy with and "
                  "without them:", ""]
        lines += md_table(["cell", "raw", "without them"],
                          [[label(r.cell), num(r.raw), num(r.deduplicated)] for r in table.itertuples()])
    return lines + [""]
