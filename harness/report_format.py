"""How numbers and cells read on the report page: the shared formatting of every section."""

from __future__ import annotations

import math


def label(cell: str) -> str:
    """A cell id without its '|' separators, which would break a markdown table."""
    return cell.replace("|", " ")


def num(value, fmt: str = ".3f") -> str:
    """A number for the page; NaN and None read 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def pval(value: float) -> str:
    """A p-value to three places; below 0.001 it reads '<0.001'."""
    return "n/a" if value is None or math.isnan(value) else "<0.001" if value < 0.001 else f"{value:.3f}"


def mean_sd_ci(mean: float, sd: float, lo: float, hi: float) -> str:
    """mean ± sd [95% CI]; a single seed has neither."""
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± n/a" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f} [{lo:.3f}, {hi:.3f}]"


def signed(value: float) -> str:
    """A difference with its sign, to three places."""
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub markdown table; the first column left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]
