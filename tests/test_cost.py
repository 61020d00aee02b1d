"""harness.stats.cost on fixed tables: the frontier, the cheapest cell within delta, the intervals' verdict."""

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


def test_cheapest_within_delta_of_the_best():
    got = cost.cheapest_within(DEFAULT, "seconds_per_run")
    assert got["best"] == "n=500 ep=4 freeze=0" and got["chosen"] == "n=500 ep=4 freeze=4"
    assert got["gap"] == pytest.approx(0.0028) and got["saving"] == pytest.approx(47.2530 / 13.6487)
    assert got["by_intervals"] is False  # 0.8318 - 0.7883 = 0.0435 > 0.01
    assert cost.sentence(got) == (
        "n=500 ep=4 freeze=4: 0.806 at 13.6 s per run, within 0.01 of the best, n=500 ep=4 freeze=0: 0.809 at "
        "47.3 s per run (3.5x the cost); the two 95% intervals do not show the gap is within it")


@pytest.mark.parametrize("delta, chosen", [
    (0.0, "n=500 ep=4 freeze=0"),  # only the best itself
    (0.0028, "n=500 ep=4 freeze=4"),  # the gap exactly: inside
    (0.011, "n=500 ep=4 freeze=4"),  # 0.8088 - 0.7977 = 0.0111 > 0.011: still out
    (0.0111, "n=500 ep=2 freeze=4"),  # exactly 0.0111: in
    (0.2, "n=500 ep=4 freeze=all"),  # above 0.6088 the cheapest is the classifier alone at 0.702
])
def test_delta_moves_the_choice(delta, chosen):
    assert cost.cheapest_within(DEFAULT, "seconds_per_run", delta=delta)["chosen"] == chosen


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


def test_intervals_that_show_the_gap_is_within_delta():
    cells = pd.DataFrame([("cheap", 0.805, 0.803, 0.807, 5.0), ("best", 0.808, 0.806, 0.810, 40.0)],
                         columns=["label", "accuracy_mean", "accuracy_lo", "accuracy_hi", "seconds_per_run"])
    got = cost.cheapest_within(cells, "seconds_per_run")
    assert got["chosen"] == "cheap" and got["by_intervals"] is True  # 0.810 - 0.803 = 0.007
    assert "shown even at the ends of both 95% intervals" in cost.sentence(got)


def test_without_intervals_there_is_no_interval_verdict():
    got = cost.cheapest_within(DEFAULT.drop(columns=["accuracy_lo", "accuracy_hi"]), "trainable_params")
    assert got["chosen"] == "n=500 ep=4 freeze=4" and "by_intervals" not in got
    assert cost.cheapest_within(DEFAULT.iloc[:0], "seconds_per_run") == {}


def test_cost_table_flags_both_frontiers():
    table = cost.cost_table(DEFAULT).set_index("label")
    assert table.loc["n=500 ep=4 freeze=4", ["frontier_seconds_per_run", "frontier_trainable_params"]].tolist() == [
        True, True]
    assert table.loc["n=500 ep=2 freeze=4", ["frontier_seconds_per_run", "frontier_trainable_params"]].tolist() == [
        True, False]
    assert table.loc["n=500 ep=4 freeze=0", "gap"] == 0 and table["gap"].max() == pytest.approx(0.8088 - 0.5630)
