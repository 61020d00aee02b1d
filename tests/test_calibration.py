"""harness.stats.calibration against scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, confusion_matrix, log_loss, precision_recall_fscore_support

from harness.stats import calibration

# binary, as stored: positive-class probability
Y_BIN = [1, 0, 0, 1, 0]
P_BIN = [0.9, 0.8, 0.3, 0.6, 0.55]
# three classes; the last two rows have top-class confidence exactly 0.4, an edge of the 15 bins
Y_MULTI = [0, 2, 1, 2, 0]
P_MULTI = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.25, 0.35, 0.4]]


@pytest.mark.parametrize("labels, probs, bins, want", [
    # bins of 0.2: (0.8, 1] holds 0.9 right; (0.6, 0.8] holds 0.8 wrong and 0.7 right; (0.4, 0.6] holds
    # 0.6 right and 0.55 wrong: 1/5 |1 - 0.9| + 2/5 |0.5 - 0.75| + 2/5 |0.5 - 0.575| = 0.02 + 0.1 + 0.03
    (Y_BIN, P_BIN, 5, 0.15),
    # 15 bins: 0.7, 0.6 and 0.5 alone and right (0.3 + 0.4 + 0.5) / 5; (1/3, 0.4] holds both 0.4s, one
    # right: 2/5 |0.5 - 0.4|
    (Y_MULTI, P_MULTI, 15, 0.28),
    (Y_BIN, P_BIN, 1, abs(0.6 - np.mean([0.9, 0.8, 0.7, 0.6, 0.55]))),  # one bin: |accuracy - mean confidence|
])
def test_ece_by_hand(labels, probs, bins, want):
    assert calibration.ece(labels, probs, bins) == pytest.approx(want)


def test_reliability_bins_are_closed_on_the_right():
    table = calibration.reliability(Y_MULTI, P_MULTI)  # 15 bins
    assert len(table) == 15 and table["count"].sum() == 5
    edge = table[table["count"] == 2].iloc[0]
    assert (edge["lo"], edge["hi"]) == pytest.approx((1 / 3, 0.4))
    assert (edge["confidence"], edge["accuracy"]) == pytest.approx((0.4, 0.5))
    assert table["confidence"].isna().sum() == 11  # empty bins have no mean


def test_perfect_confident_predictions_have_no_calibration_error():
    assert calibration.ece([0, 1, 1], [0.0, 1.0, 1.0]) == 0.0


@pytest.mark.parametrize("labels, probs", [(Y_BIN, P_BIN), (Y_MULTI, P_MULTI)])
def test_per_class_and_confusion_match_scikit_learn(labels, probs):
    p = calibration.as_probs(probs)
    pred = p.argmax(1)
    table = calibration.per_class(labels, probs)
    want = precision_recall_fscore_support(labels, pred, labels=list(range(p.shape[1])), zero_division=np.nan)
    for column, values in zip(("precision", "recall", "f1", "support"), want):
        assert table[column].to_numpy() == pytest.approx(values, nan_ok=True)
    assert (calibration.confusion(labels, probs) == confusion_matrix(labels, pred)).all()


def test_per_class_by_hand():
    # binary predictions 1, 1, 0, 1, 1 against 1, 0, 0, 1, 0: class 1 precision 2/4, recall 2/2
    table = calibration.per_class(Y_BIN, P_BIN, ["negative", "positive"]).set_index("class")
    assert table.loc["positive", ["precision", "recall", "support"]].tolist() == pytest.approx([0.5, 1.0, 2])
    assert table.loc["negative", ["precision", "recall", "f1"]].tolist() == pytest.approx([1.0, 1 / 3, 0.5])
    assert calibration.confusion(Y_BIN, P_BIN).tolist() == [[1, 2], [0, 2]]


def test_a_class_never_predicted_has_no_precision():
    table = calibration.per_class([0, 1, 1], [0.9, 0.8, 0.7])  # everything predicted positive
    assert math.isnan(table.loc[0, "precision"]) and table.loc[0, "recall"] == 0.0


@pytest.mark.parametrize("labels, probs, brier, nll", [
    # binary by hand: mean (p - y)^2 and mean -log p_y
    (Y_BIN, P_BIN, (0.01 + 0.64 + 0.09 + 0.16 + 0.3025) / 5,
     -np.mean(np.log([0.9, 0.2, 0.7, 0.6, 0.45]))),
    # three classes: mean sum_k (p_k - onehot_k)^2
    (Y_MULTI, P_MULTI, np.mean([0.09 + 0.04 + 0.01, 0.01 + 0.09 + 0.16, 0.04 + 0.25 + 0.09,
                                0.09 + 0.09 + 0.36, 0.5625 + 0.1225 + 0.16]),
     -np.mean(np.log([0.7, 0.6, 0.5, 0.4, 0.25]))),
])
def test_brier_and_nll_by_hand_and_against_scikit_learn(labels, probs, brier, nll):
    assert calibration.brier(labels, probs) == pytest.approx(brier)
    assert calibration.nll(labels, probs) == pytest.approx(nll)
    if np.ndim(probs) == 1:  # scikit-learn's own binary form, positive-class probability only
        assert calibration.brier(labels, probs) == pytest.approx(brier_score_loss(labels, probs))
        assert calibration.nll(labels, probs) == pytest.approx(log_loss(labels, probs))


def test_summary_row():
    row = calibration.summary(Y_BIN, P_BIN, bins=5)
    assert row == pytest.approx({"accuracy": 0.6, "nll": calibration.nll(Y_BIN, P_BIN),
                                 "brier": calibration.brier(Y_BIN, P_BIN), "ece": 0.15})


@pytest.mark.parametrize("probs", [[[0.5], [0.5]], np.zeros((2, 2, 2))])
def test_bad_probabilities_are_refused(probs):
    with pytest.raises(ValueError, match="probabilities must be"):
        calibration.as_probs(probs)
