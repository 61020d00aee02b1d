"""What the report's sections pass each other: every section's numbers, computed once from the store."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.evidence import Evidence
from harness.report.calibration import Calibration
from harness.report.effects import MetricEstimates
from harness.report.lab import Lab
from harness.report.labelling import Comparison
from harness.report.overfitting import Overfitting
from harness.report.tuning import Tuning
from harness.waves import Summary


@dataclass(frozen=True)
class Parts:
    evidence: Evidence  # the kept runs' per-example results
    runs: pd.DataFrame  # one row per evaluation run (frames.run_frame)
    estimates: list[MetricEstimates]  # accuracy first, then macro-F1 (and ROC-AUC)
    summary: pd.DataFrame  # one row per cell: the cells table
    baseline: dict  # the majority class's accuracy on the same examples
    overfitting: Overfitting
    curves: pd.DataFrame  # per run and epoch: the curves behind the overfitting figures
    calibration: Calibration | None  # None without test probabilities
    tuning: Tuning
    lab: Lab
    labelling: Comparison
    lab_sentences: list[str]  # the answers' sentences for section 7
    sequential: Summary | None  # the waves of an adaptive study (None: a fixed one)

    @property
    def accuracy(self) -> MetricEstimates:
        return self.estimates[0]
