"""The report's binary against three-class comparison, on the fixed store and a three-class twin of it.

The twin has the fixed store's test sentences with scores that agree with their binary labels,
labelled in three classes (neutral: (-0.5, 0.5]), and runs whose predictions are the binary runs'
with some sentences called neutral: the page's numbers are recomputed here from those arrays.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import report
from harness.report.frames import read_stored
from harness.stats.bands import band_gap

STORE = Path(__file__).parent / "fixtures" / "report_store"
SET = ['analysis.labelling_study="three"']


def _scores(labels: str) -> np.ndarray:
    """A score per test sentence that agrees with its binary label; every third one near neutral."""
    y = np.array([int(c) for c in labels])
    size = np.where(np.arange(len(y)) % 3 == 0, 0.3, 1.5)
    return np.where(y == 1, size, -size)


def _neutral(pred: str, scores: np.ndarray) -> str:
    """The three-class twin of a binary run: the same sign, neutral on every other near-neutral sentence."""
    out = [2 if c == "1" else 0 for c in pred]
    for i in np.flatnonzero(np.abs(scores) <= 0.5)[::2]:
        out[i] = 1
    return "".join(map(str, out))


@pytest.fixture()
def stores(tmp_path) -> tuple[Path, Path, np.ndarray]:
    binary, three = tmp_path / "smoke", tmp_path / "three"
    shutil.copytree(STORE, binary)
    shutil.copytree(STORE, three)
    splits = json.loads((STORE / "splits.json").read_text())
    scores = _scores(splits["test_labels"])
    n = len(scores)
    shared = {"test_rows": list(range(n)), "test_scores": scores.tolist(), "test_groups": [str(i // 6) for i in range(n)]}
    (binary / "splits.json").write_text(json.dumps(splits | shared))
    labels = np.searchsorted([-0.5, 0.5], scores, side="left")
    (three / "splits.json").write_text(json.dumps(splits | shared | {
        "class_names": ["negative", "neutral", "positive"], "test_labels": "".join(map(str, labels))}))
    manifest = json.loads((STORE / "manifest.json").read_text())
    manifest["study"]["name"] = "three"
    manifest["study"]["data"] |= {"thresholds": [-0.5, 0.5], "class_names": ["negative", "neutral", "positive"]}
    (three / "manifest.json").write_text(json.dumps(manifest))
    records = [json.loads(line) for line in (STORE / "runs.jsonl").read_text().splitlines()]
    for r in records:
        if r["role"] == "eval" and r["test"].get("pred"):
            r["test"] = r["test"] | {"pred": _neutral(r["test"]["pred"], scores), "prob": None}
    (three / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return binary, three, scores


def _page(binary: Path, overrides=SET) -> tuple[str, dict]:
    stored = read_stored(binary, overrides)
    parts = report.build(stored)
    return report.render(stored, parts, {}), parts


def test_the_page_compares_the_labellings_on_the_same_sentences(stores):
    binary, three, scores = stores
    text, parts = _page(binary)
    comp = parts.labelling
    assert comp.why == "" and comp.chosen, comp.why
    assert "### Binary against three classes" in text
    answer = next(line for line in text.splitlines() if line.startswith("- **Is binary too coarse?**"))
    assert "Against three classes cut from the same score" in answer and "on the same 720 test sentences" in answer

    # recompute the chosen cell's numbers from the stored predictions
    ev = parts.evidence
    c = list(ev.cells["cell"]).index(comp.chosen)
    binary_correct = ev.Y[c][ev.kept[c]]
    clear = np.abs(scores) > 0.5
    row = next(r for r in comp.rows if r["cell"] == comp.chosen)
    assert row["clear"]["n"] == int(clear.sum())
    assert row["clear"]["binary"]["accuracy"] == pytest.approx(binary_correct[:, clear].mean())
    # the twin's predictions have the binary runs' sign on clear sentences: the same accuracy there
    assert row["clear"]["three"]["accuracy"] == pytest.approx(row["clear"]["binary"]["accuracy"])
    assert row["clear"]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert row["clear"]["called_neutral"] == 0.0
    # near neutral: every other sentence called neutral, so the recall is about one half
    near = ~clear
    assert row["near"]["n"] == int(near.sum())
    assert row["near"]["three"]["accuracy"] == pytest.approx(len(np.flatnonzero(near)[::2]) / near.sum())
    assert f"{row['near']['three']['accuracy']:.3f}" in answer


def test_other_test_sentences_are_refused_with_the_key_to_set(stores):
    binary, three, _ = stores
    splits = json.loads((three / "splits.json").read_text())
    (three / "splits.json").write_text(json.dumps(splits | {"test_rows": splits["test_rows"][::-1]}))
    text, parts = _page(binary)
    assert "has other test sentences; give it data.split_thresholds = [0.0]" in parts.labelling.why
    assert "No three-class comparison:" in text and "### Binary against three classes" in text


def test_a_missing_companion_says_how_to_get_it(stores):
    binary, three, _ = stores
    shutil.rmtree(three)
    text, parts = _page(binary)
    assert parts.labelling.why.startswith("no results in")
    assert "Run the three-class study of the same sentences" in text


def test_without_a_labelling_study_the_page_has_no_comparison(stores):
    binary, _, _ = stores
    text, parts = _page(binary, [])
    assert parts.labelling.folder == "" and "Binary against three classes" not in text


def test_the_three_class_predictions_are_in_the_tables_and_recompute_the_comparison(stores):
    binary, _, _ = stores
    report.write_report(binary, SET)
    theirs = pd.read_csv(binary / "tables" / "labelling_predictions.csv.gz")
    ours = pd.read_csv(binary / "tables" / "predictions.csv.gz")
    table = pd.read_csv(binary / "tables" / "labelling.csv")
    assert set(theirs["cell"]) == set(table["cell"]) and (theirs["study"] == "three").all()
    for r in table.itertuples():
        clear = theirs[(theirs["cell"] == r.cell) & (theirs["score"].abs() > 0.5)]
        assert clear["correct"].mean() == pytest.approx(r.clear_three)
        assert (clear["pred"] == 1).mean() == pytest.approx(r.clear_called_neutral)
        binary_clear = ours[(ours["cell"] == r.cell) & ours["row"].isin(clear["row"]) & (ours["status"] == "ok")]
        assert binary_clear["correct"].mean() == pytest.approx(r.clear_binary)
    assert "tables/labelling_predictions.csv.gz" in (binary / "report.md").read_text()


def test_near_neutral_sentences_negative_only_by_the_tie_rule_are_counted_and_left_out(stores):
    """Scores exactly 0 are negative by data.on_threshold = "below": the page says how many, and the gap
    without them, recomputed here."""
    binary, _, scores = stores
    splits = json.loads((binary / "splits.json").read_text())
    labels = np.array([int(c) for c in splits["test_labels"]])
    tie = (np.abs(scores) < 0.5) & (labels == 0) & (np.arange(len(scores)) % 2 == 0)
    scores = np.where(tie, 0.0, scores)
    (binary / "splits.json").write_text(json.dumps(splits | {"test_scores": scores.tolist()}))
    text, parts = _page(binary, [])
    gap = parts.lab.band_gap
    assert gap["ties"] == int(tie.sum()) > 0 and gap["tie_class"] == "negative"
    ev = parts.evidence
    c = list(ev.cells["cell"]).index(gap["cell"])
    near = np.abs(scores) <= 0.5
    want = band_gap(ev.Y[c][ev.kept[c]][:, ~tie], near[~tie], ev.groups[~tie], 0.95)
    assert gap["without_ties"]["gap"] == pytest.approx(want["gap"]) and want["near"] == near.sum() - tie.sum()
    answer = next(line for line in text.splitlines() if line.startswith("- **Is binary too coarse?**"))
    assert (f"{int(tie.sum())} of the {int(near.sum())} near-neutral sentences are negative only by the tie rule "
            f"(score exactly 0, data.on_threshold = \"below\"); without them the gap is {want['gap']:+.3f}") in answer
    assert "near-neutral (score in (−0.5, 0.5]" in text and "|score| ≤ 0.5" not in text
