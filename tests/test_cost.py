"""harness.stats.cost: the frontier on fixed tables, and the cost model."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.stats import cost

# cells of the default study (3 evaluation seeds; 95% t-intervals over seeds), as its report's summary has them
DEFAULT = pd.DataFrame([
    ("n=50 ep=2 freeze=all", 0.5630, 0.4756, 0.6503, 0.0283, 148610),
    ("n=50 ep=4 freeze=all", 0.5856, 0.4559, 0.7154, 0.0397, 148610),
    ("n=150 ep=2 freeze=all", 0.5991, 0.4746, 0.7235, 0.0350, 148610),
    ("n=500 ep=4 freeze=all", 0.7019, 0.6811, 0.7226, 0.1233, 148610),
    ("n=500 ep=2 freeze=4", 0.7977, 0.7545, 0.8408, 7.5567, 3697538),
    ("n=500 ep=4 freeze=4", 0.8060, 0.7883, 0.8237, 13.6487, 3697538),
    ("n=150 ep=4 freeze=0", 0.7847, 0.7440, 0.8254, 22.0540, 22713986),
    ("n=500 ep=4 freeze=0", 0.8088, 0.7858, 0.8318, 47.2530, 22713986),
], columns=["label", "accuracy_mean", "accuracy_lo", "accuracy_hi", "seconds_per_run", "trainable_params"])


def labels(frame: pd.DataFrame) -> list[str]:
    return frame["label"].tolist()


def test_seconds_frontier_of_the_default_study():
    assert labels(cost.frontier(DEFAULT, "seconds_per_run")) == [
        "n=50 ep=2 freeze=all", "n=150 ep=2 freeze=all", "n=500 ep=4 freeze=all", "n=500 ep=2 freeze=4",
        "n=500 ep=4 freeze=4", "n=500 ep=4 freeze=0"]


def test_parameter_frontier_keeps_the_best_cell_of_each_depth():
    assert labels(cost.frontier(DEFAULT, "trainable_params")) == [
        "n=500 ep=4 freeze=all", "n=500 ep=4 freeze=4", "n=500 ep=4 freeze=0"]


@pytest.mark.parametrize("rows, expect", [
    ([("a", 0.80, 10.0), ("b", 0.80, 10.0)], [True, True]),  # ties share the frontier
    ([("a", 0.80, 10.0), ("b", 0.80, 12.0)], [True, False]),  # same value, dearer
    ([("a", 0.80, 10.0), ("b", 0.79, 10.0)], [True, False]),  # same cost, worse
    ([("a", 0.80, 10.0), ("b", math.nan, 1.0)], [True, False]),  # no value: not on it, dominates nothing
    ([("a", 0.70, 1.0), ("b", 0.80, 10.0), ("c", 0.75, 20.0)], [True, True, False]),
])
def test_on_frontier_edge_cases(rows, expect):
    cells = pd.DataFrame(rows, columns=["label", "accuracy_mean", "seconds_per_run"])
    assert cost.on_frontier(cells, "seconds_per_run").tolist() == expect




def test_the_cost_model_prices_work_alike_on_any_machine():
    """Seconds per epoch on the reference machine: steps, and parameter-positions of training and validation
    (full fine-tuning of 500 sentences with the default model measured 7.07 s per epoch there)."""
    work = {"batches": 16.0, "train": 116_000.0, "val": 82_000.0}  # 500 rows x ~21.5 tokens x 10.8M parameters
    once = cost.run_seconds(1, **work)
    assert once == pytest.approx(16 * cost.RATES["batches"] + 116_000 * cost.RATES["train"] + 82_000 * cost.RATES["val"])
    assert 5.0 < once < 8.0 and cost.run_seconds(4, **work) == pytest.approx(4 * once)
    assert cost.run_seconds(0, **work) == 0.0
