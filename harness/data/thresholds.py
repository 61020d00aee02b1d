"""Classes from a numeric score cut at thresholds, with a stated rule for a score exactly on one.

A study that turns a score into classes (data.thresholds) must say where a score equal to a
threshold goes: the VADER sentence ratings, for one, hold 98 sentences whose mean rating is
exactly 0, the usual threshold. Three rules:

- "below": the score joins the class below the threshold (class = number of thresholds strictly
  below the score). This is what harness.data does today.
- "above": the score joins the class above (class = number of thresholds at or below the score).
- "drop": the score is left out (keep mask False, label -1).

Equality is exact (floating-point ==): a mean of integer ratings lands on 0 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

RULES = ("below", "above", "drop")


@dataclass(frozen=True)
class Cut:
    labels: np.ndarray  # (N,) class index; -1 where the "drop" rule left a row out
    keep: np.ndarray  # (N,) bool; False only for rows left out by "drop"
    on_threshold: tuple[int, ...]  # per threshold, how many scores equal it
    rule: str

    @property
    def n_on_threshold(self) -> int:
        return int(sum(self.on_threshold))


def cut(scores: Sequence[float], thresholds: Sequence[float], rule: str = "below") -> Cut:
    """Class of each score under ``rule`` (see the module docstring), and the scores on a threshold."""
    if rule not in RULES:
        raise ValueError(f"threshold rule {rule!r}: expected one of {', '.join(RULES)}")
    t = np.asarray(thresholds, dtype=float)
    if len(t) == 0 or np.any(np.diff(t) <= 0):
        raise ValueError(f"thresholds {list(thresholds)}: expected one or more strictly increasing numbers")
    s = np.asarray(scores, dtype=float)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores: {int((~np.isfinite(s)).sum())} are not finite numbers")
    # searchsorted side="left" counts the thresholds strictly below a score (harness.data's rule)
    labels = np.searchsorted(t, s, side="right" if rule == "above" else "left").astype(np.int64)
    on = s[:, None] == t[None, :]  # (N, T)
    keep = ~on.any(axis=1) if rule == "drop" else np.ones(len(s), dtype=bool)
    return Cut(np.where(keep, labels, -1), keep, tuple(int(c) for c in on.sum(axis=0)), rule)


def describe(result: Cut, thresholds: Sequence[float], class_names: Sequence[str]) -> str:
    """One sentence for the report, e.g. '98 scores exactly on a threshold (98 at 0) are counted
    negative (rule: below).'"""
    if result.n_on_threshold == 0:
        return f"No score lies exactly on a threshold (rule: {result.rule})."
    at = [(n, f"{t:g}", i) for i, (n, t) in enumerate(zip(result.on_threshold, thresholds)) if n]
    counts = ", ".join(f"{n} at {t}" for n, t, _ in at)
    head = f"{result.n_on_threshold} scores exactly on a threshold ({counts})"
    if result.rule == "drop":
        return f"{head} are left out (rule: drop)."
    side = 0 if result.rule == "below" else 1  # the class below threshold i is i, the one above i + 1
    goes = [f"{class_names[i + side]}" + (f" at {t}" if len(at) > 1 else "") for _, t, i in at]
    return f"{head} are counted {', '.join(goes)} (rule: {result.rule})."


def ranges(thresholds: Sequence[float], rule: str = "below") -> list[str]:
    """Each class's range of scores in words, e.g. ['score <= 0', 'score > 0'] under rule "below"."""
    low, high = {"below": (">", "<="), "above": (">=", "<"), "drop": (">", "<")}[rule]
    t = [f"{x:g}" for x in thresholds]
    out = [f"score {high} {t[0]}"]
    out += [f"{a} {'<' if low == '>' else '<='} score {high} {b}" for a, b in zip(t, t[1:])]
    return out + [f"score {low} {t[-1]}"]
