"""harness.report on a fixed store: the golden page, its figures and tables, and the awkward stores.

The fixed store in fixtures/report_store/ is a real run of studies/smoke.toml (five
evaluation seeds, epochs 1 and 3, three trials), test probabilities rounded to keep
it small. Regenerate the golden page after a deliberate change with

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_report.py
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness import report
from harness.errors import HarnessError
from harness.report import gallery
from harness.report.frames import read_stored

FIXTURES = Path(__file__).parent / "fixtures"
STORE = FIXTURES / "report_store"
GOLDEN = FIXTURES / "report_golden.md"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """The fixed store copied and reported on once, figures included."""
    results = tmp_path_factory.mktemp("report") / "smoke"
    shutil.copytree(STORE, results)
    report.write_report(results)
    return results


def test_golden_page(written):
    text = (written / "report.md").read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "report changed: if on purpose, rerun with UPDATE_GOLDEN=1"


def test_every_figure_exists(written):
    text = (written / "report.md").read_text()
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert len(figures) == len(gallery.TITLES) - 1  # all but the forecast: the store has two data sizes
    assert "Not drawn, the store has no data for them: Learning curves and forecasts." in text
    for name in figures:
        assert (written / name).stat().st_size > 1000, name


def test_no_interval_leaves_its_range(written):
    cells = pd.read_csv(written / "tables" / "cells.csv")
    for metric in ("accuracy", "f1", "auc"):
        kept = cells.dropna(subset=[f"{metric}_lo"])
        assert ((kept[f"{metric}_lo"] >= 0) & (kept[f"{metric}_hi"] <= 1)).all(), metric
        assert ((kept[f"{metric}_lo"] <= kept[f"{metric}_mean"]) & (kept[f"{metric}_mean"] <= kept[f"{metric}_hi"])).all()
    for name in ("answers", "detail"):
        table = pd.read_csv(written / "tables" / f"{name}.csv")
        assert ((table["lo_sim"] >= -1) & (table["hi_sim"] <= 1) & (table["lo_sim"] <= table["lo"])).all()


def test_every_interval_that_excludes_zero_is_called_better_or_worse(written):
    for name in ("answers", "detail"):
        table = pd.read_csv(written / "tables" / f"{name}.csv")
        excludes = (table["lo_sim"] > 0) | (table["hi_sim"] < 0)
        assert table.loc[excludes, "verdict"].str.match(r"^(better|worse)").all()
        assert not table.loc[~excludes, "verdict"].str.match(r"^(better|worse)").any()
    assert "no detectable difference" not in (written / "report.md").read_text()


def test_answers_speak_in_effects_and_intervals(written):
    text = (written / "report.md").read_text()
    answers = text[text.index("## Answers at a glance"):text.index("## 1. Cells")]
    assert re.search(r"\*\*Did unfreezing help\?\*\* Averaged over 3 combinations of the other axes: frozen blocks "
                     r"all → 5: \+0\.\d{3} \[\+0\.\d{3}, \+0\.\d{3}\], better", answers)
    assert "**Was a late peak real?**" in answers and "**Which metrics tell the truth?**" in answers
    assert "majority class" in answers


def test_tables_are_written_as_csv(written):
    names = {p.name for p in (written / report.TABLES).iterdir()}
    assert {"cells.csv", "answers.csv", "detail.csv", "interactions.csv", "runs.csv", "calibration.csv",
            "per_class.csv", "confusion.csv", "predictions.csv.gz"} <= names


def test_predictions_recompute_the_stored_accuracies(written):
    """Every test is recomputable outside: the exported predictions give each run's stored accuracy."""
    predictions = pd.read_csv(written / "tables" / "predictions.csv.gz")
    runs = pd.read_csv(written / "tables" / "runs.csv")
    recomputed = predictions.groupby(["cell", "seed"])["correct"].mean()
    for r in runs.itertuples():
        assert recomputed[(r.cell, r.seed)] == pytest.approx(r.accuracy, abs=1e-9)
    assert len(predictions) == len(runs) * 720


def test_page_has_no_absolute_paths_or_report_time(written):
    text = (written / "report.md").read_text()
    assert str(written) not in text and "/tmp" not in text and "/work" not in text


def test_summary_rows_for_the_display():
    split, rows = report.summary_rows(STORE)
    assert split == "test"
    assert {"cell", "seeds", "accuracy", "f1", "best_epoch", "lr", "batch_size"} <= set(rows[0])
    assert all(isinstance(v, str) for r in rows for k, v in r.items() if k != "cell")


def test_cli(written, capsys):
    assert report.main([str(written), "--set", "analysis.smallest_effect=0.05"]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    assert "±0.05" in (written / "report.md").read_text()
    assert report.main([str(written / "missing")]) == 2
    assert report.main([str(written), "--set", "train.patience=3"]) == 2
    with pytest.raises(SystemExit) as exc:
        report.main(["--help"])
    assert exc.value.code == 0
    report.main([str(written)])  # as it was, for the other tests


# ---------------------------------------------------------------- awkward stores, rendered without figures

def variant(tmp_path: Path, change=lambda r: r, splits=None) -> str:
    """The fixed store with each record passed through `change` (None drops it); the page's text."""
    shutil.copytree(STORE, tmp_path / "s")
    records = [json.loads(line) for line in (STORE / "runs.jsonl").read_text().splitlines()]
    records = [c for c in (change(r) for r in records) if c is not None]
    (tmp_path / "s" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if splits is not None:
        (tmp_path / "s" / "splits.json").write_text(json.dumps(splits))
    stored = read_stored(tmp_path / "s")
    return report.render(stored, report.build(stored), {})


def test_single_evaluation_seed(tmp_path):
    text = variant(tmp_path, lambda r: None if r["role"] == "eval" and r["seed"] != 1 else r)
    assert "one seed per cell has no seed variance" in text


def test_failed_and_diverged_runs_are_counted_and_excluded(tmp_path):
    def change(r):
        if r["role"] == "eval" and r["seed"] == 1 and r["freeze"] == 5:
            return r | {"status": "failed", "error": "RuntimeError: boom", "history": [], "best_epoch": None,
                        "val": {}, "test": {}}
        if r["role"] == "eval" and r["seed"] == 2 and r["freeze"] == 5:
            return r | {"status": "diverged", "history": r["history"][:1] + [{"epoch": 2, "train_loss": math.nan}],
                        "test": {}}
        return r

    text = variant(tmp_path, change)
    assert re.search(r"\| 1 failed, 1 diverged", text)
    assert "seed 1 (failed)" in text and "seed 2 (diverged)" in text


def test_no_test_split_uses_validation(tmp_path):
    text = variant(tmp_path, lambda r: r | {"test": {}, "test_size": 0})
    assert "on the validation set (no test set" in text and "validation accuracy" in text


def test_multi_class_has_no_roc_auc(tmp_path):
    splits = json.loads((STORE / "splits.json").read_text()) | {"class_names": ["neg", "mid", "pos"]}
    text = variant(tmp_path, splits=splits)
    assert "ROC-AUC is given for binary tasks only" in text and "| ROC-AUC |" not in text


def test_one_cell_one_seed_renders(tmp_path):
    """The lab replayed: one cell, one seed, no test set."""
    keep = "n=128|ep=3|freeze=5"
    text = variant(tmp_path, lambda r: r | {"test": {}, "test_size": 0}
                   if r["cell"] == keep and r["role"] == "eval" and r["seed"] == 1 else None)
    assert "## 1. Cells" in text and "n=128 ep=3 freeze=5" in text and "validation" in text


def test_data_size_all_sorts_last(tmp_path):
    def change(r):
        if r["data_size"] == 128:
            r = r | {"data_size": "all", "cell": r["cell"].replace("n=128", "n=all")}
        return r

    shutil.copytree(STORE, tmp_path / "m")
    manifest = json.loads((STORE / "manifest.json").read_text())
    manifest["study"]["grid"]["data_sizes"] = [64, "all"]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    records = [change(json.loads(line)) for line in (STORE / "runs.jsonl").read_text().splitlines()]
    (tmp_path / "m" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    stored = read_stored(tmp_path / "m")
    text = report.render(stored, report.build(stored), {})
    assert "64 → all" in text
    assert text.index("n=64 ep=1 freeze=all") < text.index("n=all ep=1 freeze=all")


def test_without_tuning(tmp_path):
    text = variant(tmp_path, lambda r: None if r["role"] == "tune" else r)
    assert "No tuning trials" in text and "Not drawn" in text


def test_a_store_without_evaluation_runs_is_a_one_line_error(tmp_path):
    with pytest.raises(HarnessError, match="no evaluation run yet"):
        variant(tmp_path, lambda r: None if r["role"] == "eval" else r)


# ---------------------------------------------------------------- one learning curve (tests/toy.py curve_store)

@pytest.fixture(scope="module")
def curve(tmp_path_factory) -> Path:
    from toy import curve_store

    results = curve_store(tmp_path_factory.mktemp("curve") / "curve", last_flips=0.05)
    report.write_report(results)
    return results


def test_forecast_bands_are_never_narrower_than_the_largest_cell_s_interval(curve):
    text = (curve / "report.md").read_text()
    answer = next(line for line in text.splitlines() if line.startswith("- **Would the whole data set help?**"))
    forecast = pd.read_csv(curve / "tables" / "forecast.csv")
    cells = pd.read_csv(curve / "tables" / "cells.csv")
    largest = cells.loc[cells["data_size"].astype(int).idxmax()]
    beyond = forecast[forecast["size"] > 6400]
    assert len(beyond) == 2 and (beyond["hi"] - beyond["lo"] >= largest["accuracy_hi"] - largest["accuracy_lo"] - 1e-9).all()
    top = forecast.iloc[-1]
    assert f"forecasts {top['fitted']:.3f} [{top['lo']:.3f}, {top['hi']:.3f}] at 25,600 training examples" in answer
    assert "band over seeds and the test set's clustered sampling" in answer
    # the backtest reaches as far as the headline: 4x, from the sizes up to 1,600
    assert "a backtest reaching as far (4.0×: fitted up to 1,600, predicting 6,400)" in answer


def test_the_late_peak_answer_pairs_each_run_s_last_epoch_with_its_restored_one(curve):
    records = [json.loads(line) for line in (curve / "runs.jsonl").read_text().splitlines()]
    labels = [int(c) for c in json.loads((curve / "splits.json").read_text())["test_labels"]]
    by_cell: dict[str, list[float]] = {}
    for r in records:
        last = sum(int(p) == y for p, y in zip(r["test_last"]["pred"], labels)) / len(labels)
        by_cell.setdefault(r["cell"], []).append(last - r["test"]["accuracy"])
    pooled = sum(sum(v) / len(v) for v in by_cell.values()) / len(by_cell)
    table = pd.read_csv(curve / "tables" / "last_epoch.csv")
    row = table[table["cell"] == "pooled"].iloc[0]
    assert row["estimate"] == pytest.approx(pooled, abs=1e-12) and row["runs"] == 40
    assert row["hi_sim"] < 0 and row["verdict"] == "worse"  # 5% of answers flipped: worse at the last epoch
    text = (curve / "report.md").read_text()
    assert (f"Training on to the last epoch instead of stopping at the validation peak changed test accuracy by "
            f"{pooled:+.3f} [{row['lo_sim']:+.3f}, {row['hi_sim']:+.3f}], worse") in text
    assert "### Last epoch against the restored one, on the test set" in text
    assert "its last epoch's weights too (declared before any run: they choose nothing" in text


def test_the_golden_store_s_older_records_cannot_answer_the_late_peak_on_the_test_set(written):
    text = (written / "report.md").read_text()
    assert "cannot be said for these runs: none of the 20 kept evaluation runs' records holds a test score of its " \
           "last epoch's weights" in text


def test_cells_against_the_majority_class_are_paired_per_example(curve):
    baseline = pd.read_csv(curve / "tables" / "baseline.csv")
    cells = pd.read_csv(curve / "tables" / "cells.csv").set_index("cell")
    labels = [int(c) for c in json.loads((curve / "splits.json").read_text())["test_labels"]]
    majority = sum(labels) / len(labels)  # the positive class
    for r in baseline.itertuples():
        assert r.estimate == pytest.approx(cells.loc[r.cell, "accuracy_mean"] - majority, abs=1e-12)
    not_beaten = baseline[baseline["lo_sim"] <= 0]
    text = (curve / "report.md").read_text()
    assert f"{len(not_beaten)} of {len(baseline)} cells do not clearly beat it" in text
