"""harness.diagnostics on constructed curves: a real late drop, a peak within noise, replayed stopping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from harness import diagnostics

STORE = Path(__file__).parent / "fixtures" / "report_store"


def epoch(e: int, val_acc: float, correct: str | None = None, train_acc: float = 0.9, val_loss: float = 0.5,
          train_loss: float = 0.3) -> dict:
    row = {"epoch": e, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
           "val_accuracy": val_acc, "val_f1": val_acc}
    return row | ({"val_correct": correct} if correct is not None else {})


def correctness(right: int, n: int = 200, flip: int = 0) -> str:
    """`right` examples correct out of n; the first `flip` correct ones of the peak turned wrong."""
    return "0" * flip + "1" * (right - flip) + "0" * (n - right + flip) if flip else "1" * right + "0" * (n - right)


def test_lab_example_is_within_noise():
    # 0.89 at epoch 18 and 0.88 at epoch 20 on 200 reviews: two examples apart
    peak, last = "1" * 178 + "0" * 22, "0" * 2 + "1" * 176 + "0" * 22
    history = [epoch(18, 0.89, peak), epoch(19, 0.885, peak), epoch(20, 0.88, last)]
    out = diagnostics.late_drop(history, 200)
    assert (out["peak_epoch"], out["last_epoch"], out["drop_examples"]) == (18, 20, 2)
    assert out["se"] == pytest.approx(math.sqrt(0.89 * 0.11 / 200))
    assert out["mcnemar_p"] == pytest.approx(0.5)
    assert out["verdict"] == "within noise"


def test_real_late_drop():
    peak, last = "1" * 180 + "0" * 20, "0" * 25 + "1" * 155 + "0" * 20  # 25 examples lost, none gained
    history = [epoch(1, 0.7, "1" * 140 + "0" * 60), epoch(2, 0.9, peak), epoch(3, 0.775, last)]
    out = diagnostics.late_drop(history, 200)
    assert out["verdict"] == "real drop" and out["mcnemar_p"] < 1e-6 and out["drop"] == pytest.approx(0.125)


def test_no_drop_when_the_last_epoch_is_the_peak():
    assert diagnostics.late_drop([epoch(1, 0.6), epoch(2, 0.7)], 100)["verdict"] == "no drop"


def test_without_per_example_record_two_standard_errors_decide():
    history = [epoch(1, 0.9), epoch(2, 0.8)]
    assert diagnostics.late_drop(history, 400)["verdict"] == "real drop"  # 0.1 > 2 sqrt(2) 0.015
    assert diagnostics.late_drop(history, 20)["verdict"] == "within noise"  # 0.1 < 2 sqrt(2) 0.067


CURVE = [0.50, 0.60, 0.55, 0.58, 0.62, 0.61]


@pytest.mark.parametrize("patience, stop, restored, fired, cost", [
    (1, 3, 2, True, 0.02), (2, 4, 2, True, 0.02), (3, 6, 5, False, 0.0), (5, 6, 5, False, 0.0)])
def test_replay(patience, stop, restored, fired, cost):
    history = [epoch(i + 1, a) for i, a in enumerate(CURVE)]
    out = diagnostics.replay(history, patience)
    assert (out["stop_epoch"], out["restored_epoch"], out["fired"]) == (stop, restored, fired)
    assert out["cost"] == pytest.approx(cost)
    assert out["epochs_saved"] == 6 - stop


def test_replay_on_loss_and_min_delta():
    history = [epoch(i + 1, 0.5, val_loss=v) for i, v in enumerate([0.7, 0.6, 0.59, 0.65])]
    assert diagnostics.replay(history, 1, "val_loss")["restored_epoch"] == 3
    assert diagnostics.replay(history, 1, "val_loss", min_delta=0.05)["restored_epoch"] == 2


def test_replay_reproduces_the_training_loop_on_stored_runs():
    """With the study's own patience, replay restores the epoch the training loop restored."""
    manifest = json.loads((STORE / "manifest.json").read_text())
    patience, metric = manifest["study"]["train"]["patience"], manifest["study"]["train"]["metric"]
    records = [json.loads(line) for line in (STORE / "runs.jsonl").read_text().splitlines()]
    checked = 0
    for r in records:
        if r["status"] in ("ok", "collapsed") and r["history"]:
            out = diagnostics.replay(r["history"], patience, metric)
            assert out["restored_epoch"] == r["best_epoch"], r["cell"]
            assert out["stop_epoch"] == r["stopped_epoch"] or not out["fired"]
            checked += 1
    assert checked > 10


def test_gaps():
    out = diagnostics.gaps([epoch(1, 0.6, train_acc=0.7, val_loss=0.8, train_loss=0.5)])
    assert out == [{"epoch": 1, "acc_gap": pytest.approx(0.1), "loss_gap": pytest.approx(0.3)}]


@pytest.mark.parametrize("record, flag", [
    ({"status": "ok", "history": [epoch(1, 0.6)], "test": {"pred": "0101"}}, None),
    ({"status": "failed", "history": [], "test": {}}, "failed"),
    ({"status": "diverged", "history": [{"epoch": 1, "train_loss": math.nan}], "test": {}}, "diverged"),
    ({"status": "ok", "history": [epoch(1, 0.6, val_loss=math.inf)], "test": {}}, "diverged"),
    ({"status": "collapsed", "history": [epoch(1, 0.6)], "test": {"pred": "1111"}}, "collapsed"),
    ({"status": "ok", "history": [epoch(1, 0.6)], "test": {"pred": "2222"}}, "collapsed"),
    ({"status": "pruned", "history": [epoch(1, 0.6)], "test": {}}, None),
])
def test_degenerate(record, flag):
    assert diagnostics.degenerate(record) == flag


def test_run_row_and_cell_summary_keep_flagged_runs_out():
    base = {"cell": "c", "role": "eval", "val_size": 200, "best_epoch": 2, "stopped_epoch": 3}
    good = base | {"seed": 1, "status": "ok", "test": {"pred": "01"},
                   "history": [epoch(1, 0.7), epoch(2, 0.9, "1" * 180 + "0" * 20),
                               epoch(3, 0.775, "0" * 25 + "1" * 155 + "0" * 20)]}
    bad = base | {"seed": 2, "status": "collapsed", "test": {"pred": "11"},
                  "history": [epoch(1, 0.5), epoch(2, 0.5), epoch(3, 0.2)]}
    rows = pd.DataFrame([diagnostics.run_row(good), diagnostics.run_row(bad)])
    assert rows.loc[0, "verdict"] == "real drop" and rows.loc[0, "p1_stop"] == 3
    summary = diagnostics.cell_summary(rows).iloc[0]
    assert (summary["runs"], summary["collapsed"], summary["real_drops"]) == (2, 1, 1)
    assert summary["drop"] == pytest.approx(0.125)  # the collapsed run's drop of 0.3 is not averaged in
    assert summary["peak_epoch"] == 2
