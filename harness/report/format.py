"""How numbers, intervals and cells read on the report page: the shared formatting of every section."""

from __future__ import annotations

import math


def label(cell: str) -> str:
    """A cell id without its '|' separators, which would break a markdown table."""
    return cell.replace("|", " ")


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def num(value, fmt: str = ".3f") -> str:
    """A number for the page; NaN and None read 'n/a'."""
    return "n/a" if missing(value) else format(value, fmt)


def pval(value: float) -> str:
    """A p-value to three places; below 0.001 it reads '<0.001'."""
    return "n/a" if missing(value) else "<0.001" if value < 0.001 else f"{value:.3f}"


def signed(value: float, fmt: str = "+.3f") -> str:
    """A difference with its sign, to three places."""
    return "n/a" if missing(value) else format(value, fmt)


def interval(lo: float, hi: float, fmt: str = ".3f") -> str:
    """[lo, hi], or 'n/a' when either end is unknown."""
    return "n/a" if missing(lo) or missing(hi) else f"[{lo:{fmt}}, {hi:{fmt}}]"


def estimate(value: float, lo: float, hi: float, fmt: str = ".3f") -> str:
    """value [lo, hi]."""
    return "n/a" if missing(value) else f"{value:{fmt}} {interval(lo, hi, fmt)}".replace(" n/a", "")


def effect(value: float, lo: float, hi: float) -> str:
    """+0.094 [+0.055, +0.134]: a difference and its interval, signs shown."""
    return "n/a" if missing(value) else f"{value:+.3f} {interval(lo, hi, '+.3f')}".replace(" n/a", "")


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub markdown table; the first column left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"
