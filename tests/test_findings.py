"""The README's findings are the committed default report's, word for word.

``python -m harness.report`` writes the answers alone to ``findings.md`` beside ``report.md``; the
README quotes that block between two markers, so a regenerated report that changes an answer fails
here until the README says the same.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "default-report"
BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"


def quoted() -> str:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1, "README: one findings block between the markers"
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def test_the_readme_quotes_the_default_reports_findings_verbatim():
    assert quoted() == (REPORT / "findings.md").read_text().strip()


def test_the_findings_are_the_reports_own_answers():
    """Every line of findings.md is a line of the report it came from (its answers section)."""
    report = set((REPORT / "report.md").read_text().splitlines())
    lines = [line for line in (REPORT / "findings.md").read_text().splitlines() if line.strip()]
    assert len(lines) >= 6  # the preamble and an answer per question at least
    missing = [line[:80] for line in lines if line not in report]
    assert not missing, missing
