"""Per-class results and calibration of one run's predictions.

Inputs: labels (N,) and class probabilities (N, K) (a binary task may pass the positive class's
(N,)). Precision, recall, F1, the confusion matrix, Brier and NLL come from scikit-learn; the
expected calibration error and the reliability bins on the top-class confidence (Guo et al.
2017) are written by hand (scikit-learn bins the positive-class probability instead).
Details, and how rounded stored probabilities are treated: docs/methods.md, "Calibration".
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, confusion_matrix, log_loss, precision_recall_fscore_support

BINS = 15  # Guo et al. (2017) use 15 equal-width bins


def as_probs(probs: Sequence[float] | np.ndarray) -> np.ndarray:
    """(N, K) class probabilities; a 1-D input is the positive-class probability of a binary task.

    Stored probabilities are rounded (to 3 places), so a row of K >= 3 may sum to 1 +- 0.002: rows
    are divided by their sums, as scikit-learn's log_loss would, which then warns no more.
    """
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        p = np.column_stack([1.0 - p, p])
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be (N,) or (N, K >= 2), got shape {p.shape}")
    total = p.sum(axis=1, keepdims=True)
    return np.divide(p, total, out=p.copy(), where=total > 0)


def per_class(labels: Sequence[int], probs, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and support per class of the arg-max prediction (scikit-learn).

    A class never predicted has no precision (NaN, not 0): nothing was claimed for it.
    """
    p = as_probs(probs)
    k = p.shape[1]
    prec, rec, f1, support = precision_recall_fscore_support(labels, p.argmax(1), labels=list(range(k)),
                                                             zero_division=np.nan)
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    return pd.DataFrame({"class": names, "precision": prec, "recall": rec, "f1": f1, "support": support})


def confusion(labels: Sequence[int], probs) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted (arg-max) class (scikit-learn)."""
    p = as_probs(probs)
    return confusion_matrix(labels, p.argmax(1), labels=list(range(p.shape[1])))


def reliability(labels: Sequence[int], probs, bins: int = BINS) -> pd.DataFrame:
    """Reliability-diagram data: per equal-width bin of the top-class confidence, its count, mean
    confidence and accuracy (NaN for an empty bin). Bin m holds confidences in ((m-1)/M, m/M]."""
    p, y = as_probs(probs), np.asarray(labels)
    conf, right = p.max(1), (p.argmax(1) == y).astype(float)
    edges = np.arange(bins + 1) / bins
    # bin index = how many inner edges lie strictly below the confidence: bins closed on the right
    which = np.searchsorted(edges[1:-1], conf, side="left")
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=bins) / count
        acc = np.bincount(which, weights=right, minlength=bins) / count
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": count, "confidence": mean_conf,
                         "accuracy": acc})


def ece(labels: Sequence[int], probs, bins: int = BINS) -> float:
    """Expected calibration error: sum over bins of (n_b / N) |accuracy_b - confidence_b|
    (Guo et al. 2017, section 2); NaN for no examples."""
    table = reliability(labels, probs, bins)
    used = table[table["count"] > 0]
    if used.empty:
        return math.nan
    return float(np.sum(used["count"] / used["count"].sum() * (used["accuracy"] - used["confidence"]).abs()))


def brier(labels: Sequence[int], probs) -> float:
    """Brier (1950) score (scikit-learn's brier_score_loss, scale_by_half="auto").

    Binary: mean (p_positive - y)^2, the usual form. More classes: mean over examples of
    sum_k (p_k - onehot_k)^2, Brier's original form, which on two classes is twice the binary one.
    """
    p = as_probs(probs)
    return float(brier_score_loss(labels, p, labels=list(range(p.shape[1]))))


def nll(labels: Sequence[int], probs) -> float:
    """Mean negative log-likelihood -log p_y (scikit-learn's log_loss, probabilities clipped to [eps, 1 - eps])."""
    p = as_probs(probs)
    return float(log_loss(labels, p, labels=list(range(p.shape[1]))))


def summary(labels: Sequence[int], probs, bins: int = BINS) -> dict:
    """Accuracy, NLL, Brier score and ECE of one run's predictions, as one flat row."""
    p, y = as_probs(probs), np.asarray(labels)
    return {"accuracy": float(np.mean(p.argmax(1) == y)), "nll": nll(y, p), "brier": brier(y, p),
            "ece": ece(y, p, bins)}
