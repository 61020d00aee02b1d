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
from harness.stats.bands import band_gap, band_of, by_band, tied
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
    lab.forecasts, lab.crossings = _forecasts(stored, ev, runs, summary)
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

def _forecasts(stored: Stored, ev: Evidence, runs: pd.DataFrame, summary: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """A learning curve per combination of the axes other than data size; one with fewer than
    forecast.MIN_SIZES sizes is listed with the reason it is not fitted."""
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
        frame, test = part[["data_size", "seed", "accuracy"]], test_set(ev, part)
        result = forecast.forecast(frame, sizes, pool, level=1 - a.alpha, test=test,
                                   interval=_largest_interval(summary, part))
        ratio = result.table["size"].iloc[-1] / result.curve.largest if result.curve is not None else None
        backtest = forecast.backtest(frame, ratio if ratio > 1 else None, level=1 - a.alpha, test=test) \
            if ratio else {"warning": f"no curve: {part['data_size'].nunique()} data sizes"}
        out.append({"name": name, "combo": dict(zip(others, combo)), "forecast": result, "backtest": backtest,
                    "sizes": int(part["data_size"].nunique())})
    return out, _crossings(stored, out)


def test_set(ev: Evidence, part: pd.DataFrame) -> forecast.TestSet | None:
    """Each run's per-example correctness (rows of `part`, by cell, search and seed), for the band's test part."""
    cells = {c: i for i, c in enumerate(ev.cells["cell"])}
    seeds = {(int(r), int(s)): j for j, (r, s) in enumerate(zip(ev.replicates, ev.seeds))}  # a column: (search, seed)
    searches = part["replicate"] if "replicate" in part else np.zeros(len(part), int)
    rows = [ev.Y[cells[c], seeds[int(r), int(s)]] if c in cells and (int(r), int(s)) in seeds else None
            for c, r, s in zip(part["cell"], searches, part["seed"])]
    if not len(ev.labels) or any(r is None or np.isnan(r).any() for r in rows):
        return None  # a run the evidence left out: no test part rather than a wrong one
    return forecast.TestSet(np.stack(rows), ev.groups)


def _largest_interval(summary: pd.DataFrame, part: pd.DataFrame) -> tuple[float, float] | None:
    """The cells table's interval of the curve's largest size (its floor)."""
    cell = part.loc[part["data_size"].idxmax(), "cell"]
    row = summary[summary["cell"] == cell]
    if row.empty or not np.isfinite(row[["accuracy_lo", "accuracy_hi"]].to_numpy(dtype=float)).all():
        return None
    return float(row["accuracy_lo"].iloc[0]), float(row["accuracy_hi"].iloc[0])


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
    gap = band_gap(correct, near, ev.groups, level) | {"cell": best, "level": level} | _ties(stored, scores, near)
    ties = tied(scores, stored.study.data.thresholds)
    if gap.get("ties") and (near & ~ties).any():  # the gap with the sentences whose class is the tie rule's left out
        gap["without_ties"] = band_gap(correct[:, ~ties], near[~ties], np.asarray(ev.groups)[~ties], level)
    return by_band(correct, scores, ev.groups, level=level).assign(cell=best), gap


def _ties(stored: Stored, scores, near: np.ndarray) -> dict:
    """How many near-neutral sentences have their class from the tie rule alone (score exactly on a threshold)."""
    data = stored.study.data
    if data.on_threshold == "drop" or not data.thresholds:
        return {"ties": 0}
    at = tied(scores, data.thresholds) & near
    index = [list(data.thresholds).index(t) for t in np.unique(np.asarray(scores, float)[at])]
    side = 0 if data.on_threshold == "below" else 1  # below threshold i is class i, above it class i + 1
    names = stored.class_names
    return {"ties": int(at.sum()), "rule": data.on_threshold, "thresholds": [data.thresholds[i] for i in index],
            "tie_class": ", ".join(dict.fromkeys(names[i + side] for i in index if i + side < len(names)))}


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
    answer = forecast_sentence(stored, lab)
    if answer:
        out.append(f"**Would the whole data set help?** {answer}")
    if lab.cost:
        out.append(f"**Which cell is best, and which is cheapest among the best?** {_cost_sentence(lab.cost)}.")
    if lab.band_gap:
        g = lab.band_gap
        out.append(f"**Is binary too coarse?** On the {g['near']} near-neutral test sentences (score in (−0.5, 0.5]) "
                   f"{CHOSEN}, {label(g['cell'])}, is right {_band_text(lab, 'near-neutral')} "
                   f"of the time, against "
                   f"{_band_text(lab, 'clear')} on the {g['clear']} clear ones: {effect(g['gap'], g['lo'], g['hi'])} "
                   f"({g['level']:.0%} interval, seed and clustered test variance), {g['verdict']}. Where a sentence's binary "
                   "label rests on a near-zero mean rating the model does little better than chance." + _ties_text(g)
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


def forecast_sentence(stored: Stored, lab: Lab) -> str:
    """The best curve's (by validation) forecast, whether its exponent sits on a bound, its backtest at
    the same reach, and the curves that could not be fitted, with why."""
    full = [f for f in lab.forecasts if f["forecast"].curve is not None]
    short = [f for f in lab.forecasts if f["forecast"].curve is None]
    why = (f"{_sizes_text(short)}; a curve of 3 parameters needs {forecast.MIN_SIZES} (through 3 sizes or fewer "
           "it passes every mean, and nothing is left to check it by)")
    if not full:
        return f"No curve is forecast: {_names(short)} {'has' if len(short) == 1 else 'have'} {why}." if short else ""
    unfit = f"{_names(short)} {'is' if len(short) == 1 else 'are'} not forecast: {why}" if short else ""
    pool = stored.splits.get("train_pool")
    best = _chosen_curve(stored, full, lab)
    fc, row = best["forecast"], best["forecast"].table.iloc[-1]
    level = 1 - stored.analysis.alpha
    bound = fc.curve.bound
    if row["runs"] > 0:  # every size asked for was run: nothing to forecast
        return (f"The learning curves are fitted, but every size asked for was run (analysis.forecast_sizes): the "
                f"chosen one ({best['name']}) scores {row['observed']:.3f} at {int(row['size']):,}, its largest; "
                f"{_backtest_text(best['backtest'])}.")
    said = (f"The learning curve chosen on validation ({best['name']}, {best['sizes']} data sizes: of the curves' "
            "largest cells, the cheapest of those validation cannot tell from the best) forecasts "
            f"{estimate(row['fitted'], row['lo'], row['hi'])} at {int(row['size']):,} training examples"
            + (f" (the whole pool of {pool:,})" if pool and int(row['size']) == pool else "")
            + f", {row['size'] / fc.curve.largest:.1f}× the largest size run, against "
            f"{fc.table['observed'].dropna().iloc[-1]:.3f} observed there ({level:.0%} bootstrap band over seeds and "
            "the test set's clustered sampling"
            + (", widened to the largest observed cell's own interval" if row["floored"] else "")
            + ("; beyond 4× the data fitted, a long extrapolation" if row["beyond"] else "") + ")")
    if bound is not None:
        said += (f"; its exponent γ sits on its bound {bound}: the observed means bend "
                 f"{'faster' if bound else 'slower'} than any curve of the family allows, so the forecast is the "
                 "bound's, not the data's")
    return said + f"; {_backtest_text(best['backtest'])}" + (f". {unfit[0].upper()}{unfit[1:]}." if unfit else ".")


def _backtest_text(bt: dict) -> str:
    if "predicted" not in bt:
        return f"no backtest at that reach ({bt.get('warning', 'n/a')})"
    reach = f"{bt['ratio']:.1f}×"
    return (f"a backtest reaching as far ({reach}: fitted up to {bt['hidden'] / bt['ratio']:,.0f}, predicting "
            f"{bt['hidden']:,}) predicted {bt['predicted']:.3f} for the observed {bt['observed']:.3f}, error "
            f"{bt['error']:+.3f}, {'inside' if bt['inside'] else 'outside'} its band "
            f"[{bt['lo']:.3f}, {bt['hi']:.3f}]")


def _names(curves: list[dict]) -> str:
    names = [f["name"] for f in curves]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _sizes_text(curves: list[dict]) -> str:
    counts = sorted({f["sizes"] for f in curves})
    each = " each" if len(curves) > 1 else ""
    return f"only {' or '.join(map(str, counts))} data size{'s' if counts != [1] else ''}{each}"


def _ties_text(g: dict) -> str:
    """The near-neutral sentences whose class is the tie rule's, and the gap without them."""
    if not g.get("ties"):
        return ""
    at = " or ".join(f"{t:g}" for t in g["thresholds"])
    said = (f" {g['ties']} of the {g['near']} near-neutral sentences are {g['tie_class']} only by the tie rule (score "
            f"exactly {at}, data.on_threshold = \"{g['rule']}\")")
    w = g.get("without_ties")
    if not w:
        return said + "."
    return said + (f"; without them the gap is {effect(w['gap'], w['lo'], w['hi'])} on {w['near']} near-neutral "
                   f"sentences, {w['verdict']}.")


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


def _largest(stored: Stored, f: dict, lab: Lab) -> pd.DataFrame:
    """The summary row of a curve's cell at its largest data size (empty when none)."""
    table = lab.summary
    part = table[np.logical_and.reduce([table[k].astype(str) == str(v) for k, v in f["combo"].items()])]
    sizes = [stored.splits.get("train_pool", 0) if n == "all" else n for n in part["data_size"]]
    return part.iloc[[int(np.argmax(sizes))]] if len(part) else part


def _chosen_curve(stored: Stored, curves: list[dict], lab: Lab) -> dict:
    """The curve the answer speaks of, chosen as the report chooses a cell (cells.best_cell: of the cells
    validation cannot tell from the best, the cheapest), among the curves' cells at their largest size."""
    rows = {id(f): _largest(stored, f, lab) for f in curves}
    table = pd.concat([r for r in rows.values() if len(r)] or [lab.summary.iloc[:0]])
    chosen = best_cell(table) if len(table) else None
    return next((f for f in curves if len(rows[id(f)]) and rows[id(f)]["cell"].iloc[0] == chosen), curves[0])


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
        return lines + ["No kept run: nothing to forecast.", ""]
    if all(f["forecast"].curve is None for f in lab.forecasts):
        return lines + [forecast_sentence(stored, lab), ""]
    level = 1 - stored.analysis.alpha
    lines += [f"A learning curve error(n) = α + η·n^γ (γ in [−1, 0]) fitted by weighted least squares to the kept runs "
              f"of each combination of the other axes with {forecast.MIN_SIZES} data sizes or more (Hoiem et al. "
              f"2021). {level:.0%} bands from resampling the seeds and drawing the test set's shift (its clustered "
              "covariance), so they are for accuracy on new data; past the data a band is never narrower than the "
              "largest observed cell's own interval (*: widened to it). *Band for new runs*: where the mean of as "
              "many fresh seeds would fall.", ""]
    rows = []
    for f in lab.forecasts:
        t = f["forecast"].table
        for r in t[t["runs"] == 0].itertuples() if not t.empty else []:
            rows.append([f["name"], f"{r.size:,}", estimate(r.fitted, r.lo, r.hi) + ("*" if r.floored else ""),
                         f"[{r.pred_lo:.3f}, {r.pred_hi:.3f}]", "yes" if r.beyond else "no"])
        if f["forecast"].curve is None:
            rows.append([f["name"], "-", f"not fitted: {_sizes_text([f])}", "n/a", "n/a"])
    lines += md_table(["curve", "training examples", "forecast accuracy [band]", "band for new runs",
                       "beyond 4× the data"], rows)
    tests = []
    for f in lab.forecasts:
        bt = f["backtest"]
        if f["forecast"].curve is None:
            continue
        wanted = bt.get("wanted")
        tests.append([f["name"], f"{wanted:.1f}×" if wanted else "next size", str(bt.get("hidden")),
                      f"{bt['ratio']:.1f}×" if "ratio" in bt else "n/a", num(bt.get("observed")),
                      num(bt.get("predicted")), num(bt.get("error"), "+.3f"),
                      f"[{bt['lo']:.3f}, {bt['hi']:.3f}]" if "lo" in bt else "n/a",
                      "yes" if bt.get("inside") else "no" if "inside" in bt else bt.get("warning", "n/a")])
    if tests:
        lines += ["Backtest at each forecast's own reach: the curve fitted to the sizes up to the largest divided by "
                  "the reach of its farthest forecast, predicting the largest size (the band for the mean of as many "
                  "fresh runs):", ""]
        lines += md_table(["curve", "reach wanted", "predicted size", "reach", "observed", "predicted", "error", "band",
                           "inside band"], tests)
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
    g = lab.band_gap
    lines = ["### Accuracy by score band", "",
             f"{CHOSEN[0].upper() + CHOSEN[1:]}, {label(g['cell'])}, on test sentences by the raters' mean score: "
             "near-neutral (score in (−0.5, 0.5]: above −0.5, up to and "
             "including 0.5) against clear (the rest); intervals clustered by group.", ""] + \
        md_table(["band", "examples", "groups", "accuracy [95%]", "design effect"], rows)
    if g.get("ties"):
        w = g.get("without_ties")
        lines += [f"{g['ties']} of the {g['near']} near-neutral sentences have a score exactly on the threshold "
                  f"({', '.join(f'{t:g}' for t in g['thresholds'])}) and are {g['tie_class']} only by the tie rule "
                  f"(data.on_threshold = \"{g['rule']}\"). Near-neutral minus clear: {effect(g['gap'], g['lo'], g['hi'])} "
                  f"with them" + (f", {effect(w['gap'], w['lo'], w['hi'])} without them ({w['near']} near-neutral "
                                  f"sentences, {w['verdict']})" if w else "") + ".", ""]
    return lines


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
