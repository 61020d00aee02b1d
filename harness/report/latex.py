"""tables/*.tex: the answers, cells and effects tables for a paper (booktabs), as the page shows them.

The rows are the sections' own (``cells.table_rows``, ``effects.family_rows``), so every number
reads as in report.md; pandas' Styler writes the LaTeX and escapes it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from harness.report import cells, effects
from harness.report.frames import Stored
from harness.report.parts import Parts

SYMBOLS = {"→": r"$\to$", "Δ": r"$\Delta$", "±": r"$\pm$", "×": r"$\times$", "−": r"$-$", "δ": r"$\delta$",
           "α": r"$\alpha$", "ρ": r"$\rho$", "…": r"\ldots{}"}


def tabular(header: list[str], rows: list[list[str]], caption: str, label: str) -> str:
    """A booktabs table (needs \\usepackage{booktabs}): first column left, the rest right."""
    frame = pd.DataFrame(rows, columns=header)
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    text = styler.to_latex(column_format="l" + "r" * (len(header) - 1), hrules=True, caption=_tex(caption),
                           label=label, position="htbp", position_float="centering")
    for symbol, tex in SYMBOLS.items():
        text = text.replace(symbol, tex)
    text = re.sub(r"(?<![\\\w])\*([^*\n]+)\*", r"\\emph{\1}", text)  # the page's *italics*
    return "% written by python -m harness.report; needs \\usepackage{booktabs}\n" + text


def _tex(text: str) -> str:
    for char, tex in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                      ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, tex)
    return text


def tables(stored: Stored, parts: Parts) -> dict[str, str]:
    """File name -> LaTeX: cells, and per metric laid out on the page its answers and effects families."""
    a, where = stored.analysis, "test" if stored.source == "test" else "validation"
    out = {"cells.tex": tabular(*cells.table_rows(stored, parts.summary, parts.baseline),
                                f"Study {stored.study.name}: each cell's mean {where} metrics over its kept seeds with "
                                f"{1 - a.alpha:.0%} intervals (seed and test-set variance).", "tab:cells")}
    for m in parts.estimates:
        if m.grid is None or m.metric not in effects.families(stored):
            continue
        suffix = "" if m.metric == "accuracy" else "_" + re.sub(r"\W+", "_", m.metric.lower())
        for which, name, what in (("answers", "answers", "each axis's steps averaged over the rest of the grid"),
                                  ("detail", "effects", "every adjacent pair of cells")):
            if getattr(m.grid, which).empty:
                continue
            out[f"{name}{suffix}.tex"] = tabular(
                *effects.family_rows(m, which),
                f"Study {stored.study.name}, {m.metric}: {what}; simultaneous {1 - a.alpha:.0%} intervals over the "
                f"family (max-t) and each estimate's own, verdicts at delta = {a.smallest_effect:g}.",
                f"tab:{name}{suffix}")
    return out


def write(stored: Stored, parts: Parts, folder: Path) -> list[Path]:
    paths = []
    for name, text in tables(stored, parts).items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    return paths


__all__ = ["tables", "tabular", "write"]
