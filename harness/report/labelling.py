"""Section 7, binary against three classes: this study's runs and those of a study of the same
sentences under another labelling of the same score (``analysis.labelling_study``), compared
cell by cell on the same test sentences (harness.stats.labelling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.stats import labelling
from harness.errors import HarnessError
from harness.evidence import Evidence, from_records
from harness.report.format import effect, estimate, label, md_table, num
from harness.report.frames import Stored, read_stored


@dataclass
class Comparison:
    folder: str = ""  # the other study's results folder
    why: str = ""  # why there is no comparison ("" when there is one)
    edges: tuple = ()  # the other study's thresholds: its neutral band
    rows: list[dict] = field(default_factory=list)  # per shared cell: harness.stats.labelling.compare's result
    chosen: str = ""  # the shared cell with the best validation accuracy of this study
    level: float = 0.95  # of every interval
    # the other study's kept runs of the shared cells, one row per run and test sentence (`predictions`)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


def compute(stored: Stored, ev: Evidence, summary: pd.DataFrame) -> Comparison:
    name = stored.analysis.labelling_study
    if not name or not stored.study.data.thresholds:  # labels not cut from a score: nothing to compare
        return Comparison()
    folder = stored.results.dir.parent / name
    out = Comparison(folder=str(folder), level=1 - stored.analysis.alpha)
    if not (folder / "manifest.json").exists():
        out.why = f"no results in {folder} yet"
        return out
    try:
        other = read_stored(folder)
    except HarnessError as exc:
        out.why = str(exc)
        return out
    out.why = _not_comparable(stored, other, ev)
    if out.why:
        return out
    oev = from_records(other.records, other.splits, other.axes)
    out.edges = tuple(other.study.data.thresholds)
    scores = np.asarray(stored.splits["test_scores"], dtype=float)
    theirs = {c: i for i, c in enumerate(oev.cells["cell"])}
    for c, cell in enumerate(ev.cells["cell"]):
        if cell not in theirs or not ev.kept[c].any() or not oev.kept[theirs[cell]].any():
            continue
        o = theirs[cell]
        result = labelling.compare(ev.Y[c][ev.kept[c]], oev.Y[o][oev.kept[o]], oev.pred[o][oev.kept[o]], scores,
                                   ev.groups, ev.labels.astype(int), oev.labels.astype(int), neutral=1,
                                   edges=out.edges, level=out.level,
                                   delta=stored.analysis.smallest_effect)
        out.rows.append(result | {"cell": cell})
    if not out.rows:
        out.why = f"no cell of {folder} has kept runs under the same name as a cell here"
        return out
    out.predictions = predictions(other, oev, [r["cell"] for r in out.rows], scores)
    val = summary.set_index("cell")["val_mean"] if "val_mean" in summary else pd.Series(dtype=float)
    shared = [r["cell"] for r in out.rows if "clear" in r]
    out.chosen = max(shared, key=lambda c: val.get(c, -1.0)) if shared else ""
    return out


def predictions(other: Stored, oev: Evidence, cells: list[str], scores: np.ndarray) -> pd.DataFrame:
    """The other study's kept runs of `cells` on the shared test sentences, in long form: with this
    study's tables/predictions.csv.gz (joined on cell, row and seed) the comparison can be recomputed."""
    rows_of = other.splits.get("test_rows") or list(range(len(oev.labels)))
    frames = []
    for cell in cells:
        c = list(oev.cells["cell"]).index(cell)
        for s in np.flatnonzero(oev.kept[c]):
            frames.append(pd.DataFrame({"cell": cell, "seed": int(oev.seeds[s]), "study": other.study.name,
                                        "row": rows_of, "group": oev.groups, "score": scores,
                                        "label": oev.labels.astype(int), "pred": oev.pred[c, s].astype(int),
                                        "correct": oev.Y[c, s].astype(int)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _not_comparable(stored: Stored, other: Stored, ev: Evidence) -> str:
    """Why the two studies cannot be compared sentence by sentence ("" when they can)."""
    if ev.source != "test" or other.source != "test":
        return "both studies need a test set"
    if not stored.binary or len(other.class_names) != 3 or len(other.study.data.thresholds) != 2:
        return "expected this study binary and the other three classes cut from the same score"
    ours, theirs = (s.manifest.get("data") or {} for s in (stored, other))
    if ours.get("sha256") != theirs.get("sha256"):
        return f"{other.results.dir} was run on other data (sha256 {str(theirs.get('sha256'))[:16]}...)"
    if stored.splits.get("test_rows") != other.splits.get("test_rows") or stored.splits.get("test_scores") is None:
        return (f"{other.results.dir} has other test sentences; give it data.split_thresholds = "
                f"{list(stored.study.data.thresholds)} to split as this study does")
    return ""


def sentence(comp: Comparison) -> str:
    """The answer: on clear sentences the two labellings ask the same question; on near-neutral ones not."""
    if comp.why and comp.folder:
        return f"No three-class comparison: {comp.why}."
    if not comp.chosen:
        return ""
    r = next(r for r in comp.rows if r["cell"] == comp.chosen)
    c, near = r["clear"], r.get("near")
    said = (f"Against three classes cut from the same score (neutral: score in {_band(comp.edges)}) on the same "
            f"{r['n']} test sentences ({label(comp.chosen)}, {r['runs'][0]} binary and {r['runs'][1]} three-class "
            f"runs): on the {c['n']} clear ones, where both labellings ask negative or positive, the binary model is "
            f"right {num(c['binary']['accuracy'])} and the three-class model {num(c['three']['accuracy'])} "
            f"(binary minus three-class {effect(c['difference'], c['lo'], c['hi'])}, {comp.level:.0%} interval over seeds and "
            f"reviews, {_meaning(c['verdict'])}; it calls {c['called_neutral']:.0%} of them neutral)")
    if near:
        said += (f"; on the {near['n']} near-neutral ones the three-class model recognises "
                 f"{estimate(near['three']['accuracy'], near['three']['lo'], near['three']['hi'])} as neutral, "
                 f"where the binary model's sign is right {num(near['binary']['accuracy'])}")
    return said + "."


def _band(edges: tuple) -> str:
    return f"({edges[0]:g}, {edges[1]:g}]".replace("-", "\u2212")


def _meaning(verdict: str) -> str:
    word = verdict.split(",")[0]
    return {"better": "the neutral class costs accuracy on clear sentences",
            "worse": "the neutral class helps even on clear sentences",
            "undecided": "undecided at these seeds"}.get(word, f"{verdict}: the neutral class costs nothing "
                                                                "detectable on clear sentences")


def render(comp: Comparison) -> list[str]:
    if not comp.folder:
        return []
    lines = ["### Binary against three classes", ""]
    if comp.why:
        return lines + [f"No comparison: {comp.why}. Run the three-class study of the same sentences "
                        f"(results in {comp.folder}) and write this report again.", ""]
    lines += [f"This study's runs against those in {comp.folder} (neutral: score in {_band(comp.edges)}), cell by cell on "
              "the same test sentences. *Clear* sentences: both labellings ask negative or positive, so the "
              "accuracies compare directly (a three-class answer of neutral there is wrong); *near-neutral*: the "
              "three-class model's accuracy is its recall of neutral, the binary model's the sign of a near-zero "
              f"rating. Differences: binary minus three-class, {comp.level:.0%} interval with seed variance of both sides and "
              "test variance clustered by review (Welch-Satterthwaite df). The three-class runs' predictions of every "
              "sentence are in `tables/labelling_predictions.csv.gz` (this study's in `tables/predictions.csv.gz`).", ""]
    rows = []
    for r in comp.rows:
        c, near = r.get("clear"), r.get("near")
        rows.append([label(r["cell"]), f"{r['runs'][0]}/{r['runs'][1]}",
                     num(c["binary"]["accuracy"]) if c else "n/a", num(c["three"]["accuracy"]) if c else "n/a",
                     effect(c["difference"], c["lo"], c["hi"]) if c else "n/a",
                     c["verdict"] if c else "n/a", f"{c['called_neutral']:.0%}" if c else "n/a",
                     num(near["binary"]["accuracy"]) if near else "n/a",
                     estimate(near["three"]["accuracy"], near["three"]["lo"], near["three"]["hi"]) if near else "n/a"])
    return lines + md_table(["cell", "runs (binary/three)", "clear: binary", "clear: three-class",
                             f"difference [{comp.level:.0%}]", "verdict", "clear called neutral", "near-neutral: binary",
                             f"near-neutral: neutral recall [{comp.level:.0%}]"], rows)


def frame(comp: Comparison) -> pd.DataFrame:
    """The comparison as a table for tables/labelling.csv."""
    rows = []
    for r in comp.rows:
        c, near = r.get("clear") or {}, r.get("near") or {}
        rows.append({"cell": r["cell"], "binary_runs": r["runs"][0], "three_runs": r["runs"][1],
                     "clear_n": c.get("n"), "clear_binary": (c.get("binary") or {}).get("accuracy"),
                     "clear_three": (c.get("three") or {}).get("accuracy"), "difference": c.get("difference"),
                     "lo": c.get("lo"), "hi": c.get("hi"), "df": c.get("df"), "verdict": c.get("verdict"),
                     "clear_called_neutral": c.get("called_neutral"), "near_n": near.get("n"),
                     "near_binary": (near.get("binary") or {}).get("accuracy"),
                     "near_neutral_recall": (near.get("three") or {}).get("accuracy")})
    return pd.DataFrame(rows)
