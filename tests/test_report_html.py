"""report.html in a real headless browser (Debian's chromium through chromedriver), and the LaTeX tables.

The page is the fixed store's report (tests/fixtures/report_store): it must load without a console
error, render every figure, show the answers on the first screen, fold its long tables, and say
every number report.md says. Without chromium the browser cases are skipped with the reason, except
under CI, where they fail (.ci/run installs it).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from harness import report
from harness.report import latex, webpage

STORE = Path(__file__).parent / "fixtures" / "report_store"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,800"]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("html") / "smoke"
    shutil.copytree(STORE, results)
    report.write_report(results)
    return results


@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"no {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must test the page: .ci/run installs them)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="harness-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_window_size(1280, 800)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def loaded(browser, written):
    browser.get((written / "report.html").as_uri())
    browser.execute_script("return document.readyState")
    return browser


def test_the_page_loads_without_a_console_error(loaded):
    errors = [e for e in loaded.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert loaded.title == "Study smoke: ablation report"


def test_every_figure_renders(loaded, written):
    images = loaded.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.src.slice(0, 22)])")
    figures = re.findall(r"!\[([^]]*)\]\(figures/", (written / "report.md").read_text())
    assert [i[0] for i in images] == figures and len(figures) >= 9
    for alt, complete, width, src in images:
        assert complete and width > 100, alt
        assert src == "data:image/png;base64,", alt  # embedded: the file alone is the page


def test_the_answers_are_on_the_first_screen(loaded):
    top, height = loaded.execute_script(
        "const h = Array.from(document.querySelectorAll('h2')).find(e => e.textContent === 'Answers at a glance');"
        "return [h.getBoundingClientRect().top, window.innerHeight]")
    assert height > 600  # the 800-pixel window less the browser's own chrome
    assert 0 < top < height / 2
    first = loaded.execute_script("return document.querySelector('h2').textContent")
    assert first == "Answers at a glance"


def test_long_tables_are_folded_and_the_cells_table_is_not(loaded):
    folded = loaded.execute_script(
        "return Array.from(document.querySelectorAll('details')).map("
        "d => [d.open, d.querySelectorAll('tbody tr').length, d.getBoundingClientRect().height])")
    assert folded, "the appendix of 20 runs is longer than the fold"
    for is_open, rows, height in folded:
        assert not is_open and rows > webpage.FOLD_ROWS and height < 60  # closed: the summary line only
    cells_rows = loaded.execute_script(
        "const h = Array.from(document.querySelectorAll('h2')).find(e => e.textContent === '1. Cells');"
        "let e = h.nextElementSibling; while (e.tagName !== 'TABLE') e = e.nextElementSibling;"
        "return [e.closest('details') === null, e.querySelectorAll('tbody tr').length]")
    assert cells_rows == [True, 9]  # eight cells and the baseline, open


def test_the_page_says_every_number_the_markdown_says(written):
    """Generated from report.md itself: the same numbers in the same order."""
    md = (written / "report.md").read_text()
    page = (written / "report.html").read_text()
    body = page.split("<body>", 1)[1]  # the head holds the title and the style sheet
    body = re.sub(r"<summary>.*?</summary>", "", body)  # "Table of 19 rows": the fold's own words
    text = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]+"', "", body)))
    number = r"[+\-−]?\d+(?:[.,]\d+)*"
    md_numbers = re.findall(number, re.sub(r"\]\([^)]*\)", "]", md))  # link targets are not shown
    assert re.findall(number, text) == md_numbers
    assert len(md_numbers) > 500


def test_the_latex_tables_are_the_pages_tables(written):
    """Every row of every .tex table is a row of a table in report.md, cell for cell."""
    tables = written / "tables"
    assert sorted(p.name for p in tables.glob("*.tex")) == ["answers.tex", "cells.tex", "effects.tex"]
    md_rows = set((written / "report.md").read_text().splitlines())
    back = {r"$\to$": "→", r"$\Delta$": "Δ", r"$\times$": "×", r"$\pm$": "±", r"$-$": "−", "\\_": "_", r"\%": "%"}
    import pandas as pd

    rows = {name: len(frame[frame["metric"] == "accuracy"]) for name, frame in
            (("answers", pd.read_csv(tables / "answers.csv")), ("effects", pd.read_csv(tables / "detail.csv")))}
    rows["cells"] = len(pd.read_csv(tables / "cells.csv")) + 1  # and the majority class's row
    for name, count in rows.items():
        text = (tables / f"{name}.tex").read_text()
        assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
        lines = [r for r in text[text.index("\\toprule"):text.index("\\bottomrule")].splitlines()[1:]
                 if r.strip() and r != "\\midrule"]
        assert len(lines) == count + 1  # the header, then the rows
        for line in lines:
            for tex, char in back.items():
                line = line.replace(tex, char)
            line = re.sub(r"\\emph\{([^}]*)\}", r"*\1*", line.removesuffix(" \\\\"))
            assert "| " + line.replace(" & ", " | ") + " |" in md_rows, line


def test_latex_escapes_what_latex_would_read_as_commands():
    text = latex.tabular(["step", "Δ"], [["data_size 50 → 150 & 100%", "*majority* ±0.1 #1 $x"]], "a_b 5%", "tab:x")
    line = text.split("\\midrule\n")[1].split("\n")[0]
    assert line == r"data\_size 50 $\to$ 150 \& 100\% & \emph{majority} $\pm$0.1 \#1 \$x \\"
    assert "\\caption{a\\_b 5\\%}" in text and "$\\Delta$" in text


def test_the_html_page_embeds_figures_and_folds_only_long_tables(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"\x89PNG fake")
    rows = "\n".join(f"| r{i} | {i} |" for i in range(webpage.FOLD_ROWS + 1))
    short = "\n".join(f"| s{i} | {i} |" for i in range(webpage.FOLD_ROWS))
    text = (f"# T\n\n## Answers at a glance\n\n- one\n\n![A](figures/a.png)\n\n## 1. Cells\n\n| c | n |\n|---|---:|\n"
            f"{rows}\n\n## 2. Effects\n\n| c | n |\n|---|---:|\n{rows}\n\n| c | n |\n|---|---:|\n{short}\n")
    page = webpage.page(text, tmp_path, "T")
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in page
    assert page.count("<details>") == 1  # the long effects table; the cells table stays open, the short one too
    assert "Table of 13 rows" in page
