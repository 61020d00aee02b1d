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
import sys
from pathlib import Path

import pytest

from harness import report
from harness.figures import FILES

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
    assert len(figures) == len(FILES)
    for name in figures:
        assert (written / name).stat().st_size > 1000, name


def test_significance_has_corrected_p_for_every_axis(written):
    import pandas as pd

    table = pd.read_csv(written / report.TABLES / "significance.csv")
    assert set(table["axis"]) == set(report.AXES)
    for axis, rows in table.groupby("axis"):
        assert rows["p_holm"].notna().any(), axis
    assert (table["p_holm"].dropna() >= table["p"].dropna().loc[table["p_holm"].notna()]).all()
    page = (written / "report.md").read_text()
    assert "p (Holm)" in page and "ASO ε_min" in page


def test_tables_are_written_as_csv(written):
    names = {p.stem for p in (written / report.TABLES).glob("*.csv")}
    assert {"summary", "runs", "significance", "diagnostics_runs", "diagnostics_cells"} <= names


def test_page_has_no_absolute_paths_or_report_time(written):
    text = (written / "report.md").read_text()
    assert str(written) not in text and "/tmp" not in text and "/work" not in text


def test_summary_rows_for_the_display():
    rows = report.summary_rows(STORE)
    assert {"cell", "seeds", "accuracy", "f1", "best_epoch", "lr", "batch_size"} <= set(rows[0])
    assert all(isinstance(v, str) for r in rows for k, v in r.items() if k != "cell")


def test_cli(written, capsys):
    assert report.main([str(written)]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    assert report.main([str(written / "missing")]) == 2
    with pytest.raises(SystemExit) as exc:
        report.main(["--help"])
    assert exc.value.code == 0


def test_report_modules_never_import_training():
    """Data flows one way: the report side reads the store and never reaches back up the chain."""
    banned = {"harness.train", "harness.runner", "harness.modeling", "harness.tuning", "harness.data"}
    package = Path(report.__file__).parent
    modules = ["stats", "diagnostics", "figures"] + [p.stem for p in package.glob("report*.py")]
    for module in modules:
        tree = ast.parse((package / f"{module}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {f"harness.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                     and n.module == "harness" for a in n.names}
        assert not imported & banned, module


# ---------------------------------------------------------------- awkward stores, rendered without figures

def variant(tmp_path: Path, change=lambda r: r, splits=None) -> str:
    """The fixed store with each record passed through `change` (None drops it); the page's text."""
    shutil.copytree(STORE, tmp_path / "s")
    records = [json.loads(line) for line in (STORE / "runs.jsonl").read_text().splitlines()]
    records = [c for c in (change(r) for r in records) if c is not None]
    (tmp_path / "s" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if splits is not None:
        (tmp_path / "s" / "splits.json").write_text(json.dumps(splits))
    return report.render(report.build(report.read_stored(tmp_path / "s")), {})


def test_single_evaluation_seed(tmp_path):
    text = variant(tmp_path, lambda r: None if r["role"] == "eval" and r["seed"] != 1 else r)
    assert "± n/a" in text and "too few seeds" in text and "McNemar" in text


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
    assert "on the validation (no test split" in text and "validation accuracy" in text


def test_multi_class_has_no_roc_auc(tmp_path):
    splits = json.loads((STORE / "splits.json").read_text()) | {"class_names": ["neg", "mid", "pos"]}
    text = variant(tmp_path, splits=splits)
    assert "ROC-AUC is reported for binary tasks only" in text and "| ROC-AUC |" not in text


def test_data_size_all_sorts_last(tmp_path):
    def change(r):
        if r["data_size"] == 128:
            r = r | {"data_size": "all", "cell": r["cell"].replace("n=128", "n=all")}
        return r

    text = variant(tmp_path, change)
    assert "64 → all" in text
    assert text.index("n=64 ep=1 freeze=all") < text.index("n=all ep=1 freeze=all")


def test_without_deepsig_the_report_says_aso_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "deepsig", None)
    text = variant(tmp_path)
    assert "ASO unavailable" in text and "ASO (deepsig) unavailable" in text


def test_without_tuning(tmp_path):
    text = variant(tmp_path, lambda r: None if r["role"] == "tune" else r)
    assert "No tuning trials" in text and "not drawn" in text


def test_a_store_without_evaluation_runs_is_a_one_line_error(tmp_path):
    with pytest.raises(report.HarnessError, match="no evaluation run yet"):
        variant(tmp_path, lambda r: None if r["role"] == "eval" else r)
