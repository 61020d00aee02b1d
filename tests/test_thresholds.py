"""harness.data.thresholds: the three rules for a score exactly on a threshold, and data.py's own rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.data import thresholds
from harness.data import encode_labels
from harness.study import DataSpec

SCORES = [-1.5, 0.0, 0.25, 0.0, 2.0, 1.0, -0.1]


@pytest.mark.parametrize("rule, labels, keep, on", [
    ("below", [0, 0, 1, 0, 1, 1, 0], [True] * 7, (2,)),
    ("above", [0, 1, 1, 1, 1, 1, 0], [True] * 7, (2,)),
    ("drop", [0, -1, 1, -1, 1, 1, 0], [True, False, True, False, True, True, True], (2,)),
])
def test_one_threshold(rule, labels, keep, on):
    out = thresholds.cut(SCORES, [0.0], rule)
    assert out.labels.tolist() == labels and out.keep.tolist() == keep
    assert out.on_threshold == on and out.n_on_threshold == 2


@pytest.mark.parametrize("rule, labels", [
    ("below", [0, 0, 1, 0, 2, 1, 0]),  # 1.0 sits on the second threshold: the middle class
    ("above", [0, 1, 1, 1, 2, 2, 0]),
    ("drop", [0, -1, 1, -1, 2, -1, 0]),
])
def test_two_thresholds(rule, labels):
    out = thresholds.cut(SCORES, [0.0, 1.0], rule)
    assert out.labels.tolist() == labels and out.on_threshold == (2, 1)


def test_below_is_what_harness_data_does():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.integers(-8, 9, 200) / 4, [0.0, 1.0, -1.0]])  # many exact ties
    spec = DataSpec(thresholds=(-1.0, 0.0, 1.0))
    want, *_ = encode_labels(pd.Series(scores, name="score"), spec, "test")
    assert thresholds.cut(scores, spec.thresholds, "below").labels.tolist() == want.tolist()


@pytest.mark.parametrize("rule, cuts, want", [
    ("below", [0.0], "2 scores exactly on a threshold (2 at 0) are counted negative (rule: below)."),
    ("above", [0.0], "2 scores exactly on a threshold (2 at 0) are counted positive (rule: above)."),
    ("drop", [0.0], "2 scores exactly on a threshold (2 at 0) are left out (rule: drop)."),
    ("below", [0.0, 1.0], "3 scores exactly on a threshold (2 at 0, 1 at 1) are counted negative at 0, "
                          "neutral at 1 (rule: below)."),
    ("below", [0.5], "No score lies exactly on a threshold (rule: below)."),
])
def test_describe(rule, cuts, want):
    names = ["negative", "positive"] if len(cuts) == 1 else ["negative", "neutral", "positive"]
    assert thresholds.describe(thresholds.cut(SCORES, cuts, rule), cuts, names) == want


@pytest.mark.parametrize("scores, cuts, rule, message", [
    (SCORES, [0.0], "nearest", "threshold rule 'nearest'"),
    (SCORES, [1.0, 0.0], "below", "strictly increasing"),
    (SCORES, [], "below", "strictly increasing"),
    ([0.1, float("nan")], [0.0], "below", "1 are not finite"),
])
def test_bad_input_is_refused(scores, cuts, rule, message):
    with pytest.raises(ValueError, match=message):
        thresholds.cut(scores, cuts, rule)
