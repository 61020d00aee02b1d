"""harness.report.diagnostics and harness.kept on constructed curves: a real late drop, a peak within noise, replayed stopping,
collapse judged on validation predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import kept
from harness.report import diagnostics
from harness.report.tuning import trial_value
from harness.stats.proportions import wilson_interval
from harness.stats.search import expected_max

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
    assert out["drop_p"] == 1.0  # the two changed reviews fall in one half: the other half sees no change
    assert out["verdict"] == "within noise"


def test_real_late_drop():
    peak, last = "1" * 180 + "0" * 20, "0" * 25 + "1" * 155 + "0" * 20  # 25 examples lost, none gained
    history = [epoch(1, 0.7, "1" * 140 + "0" * 60), epoch(2, 0.9, peak), epoch(3, 0.775, last)]
    out = diagnostics.late_drop(history, 200)
    assert out["verdict"] == "real drop" and out["mcnemar_p"] < 1e-6 and out["drop"] == pytest.approx(0.125)
    assert out["split_peak_epoch"] == 2 and out["drop_p"] < 1e-3  # tested on the half that did not choose it


def test_drop_test_is_clustered_by_group():
    # the same 25 lost examples, all in one review of 25: one group, one coin, in whichever half it falls
    peak, last = "1" * 180 + "0" * 20, "0" * 25 + "1" * 155 + "0" * 20
    history = [epoch(1, 0.7, "1" * 140 + "0" * 60), epoch(2, 0.9, peak), epoch(3, 0.775, last)]
    groups = np.concatenate([np.zeros(25), np.arange(1, 176)])
    out = diagnostics.late_drop(history, 200, groups=groups)
    assert out["drop_p"] >= 0.5 and out["verdict"] == "within noise"


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


@pytest.mark.parametrize("patience, budget, fired, stop, restored, why", [
    (3, 6, False, 6, 5, "ran to the budget"),
    (5, 4, None, None, None, "cannot fire: a budget of 4 epochs is under patience + 1"),
    (5, 10, None, None, None, "cut short at epoch 6 of 10 before patience ran out"),
    (1, 10, True, 3, 2, "fired"),  # fires before the cut: known
])
def test_replay_says_when_the_curve_cannot_tell(patience, budget, fired, stop, restored, why):
    history = [epoch(i + 1, a) for i, a in enumerate(CURVE)]
    out = diagnostics.replay(history[:budget], patience, budget=budget)
    assert (out["fired"], out["stop_epoch"], out["why"]) == (fired, stop, why)
    assert out["restored_epoch"] == restored or (fired is None and budget == 4 and out["restored_epoch"] == 2)
    assert math.isnan(out["cost"]) == (fired is None)


def test_replay_min_delta_on_accuracy():
    # 0.60 -> 0.605 is not an improvement of more than 0.01: the best stays at epoch 2
    history = [epoch(i + 1, a) for i, a in enumerate([0.50, 0.60, 0.605, 0.608, 0.62])]
    plain = diagnostics.replay(history, 2)
    strict = diagnostics.replay(history, 2, min_delta=0.01)
    assert (plain["fired"], plain["restored_epoch"]) == (False, 5)
    assert (strict["fired"], strict["stop_epoch"], strict["restored_epoch"]) == (True, 4, 2)
    assert strict["cost"] == pytest.approx(0.02)


def test_replay_on_loss_and_min_delta():
    history = [epoch(i + 1, 0.5, val_loss=v) for i, v in enumerate([0.7, 0.6, 0.59, 0.65])]
    assert diagnostics.replay(history, 1, "val_loss")["restored_epoch"] == 3
    assert diagnostics.replay(history, 1, "val_loss", min_delta=0.05)["restored_epoch"] == 2


def test_replay_reproduces_the_training_loop_on_stored_runs():
    """With the study's own patience, replay restores the epoch the training loop restored."""
    manifest = json.loads((STORE / "manifest.json").read_text())
    train = manifest["study"]["train"]
    records = [json.loads(line) for line in (STORE / "runs.jsonl").read_text().splitlines()]
    checked = 0
    for r in records:
        if r["status"] in ("ok", "collapsed") and r["history"]:
            out = diagnostics.replay(r["history"], train["patience"], train["metric"], train["min_delta"], r["epochs"])
            assert out["restored_epoch"] == r["best_epoch"], r["cell"]
            assert out["stop_epoch"] == r["stopped_epoch"] or not out["fired"]
            checked += 1
    assert checked > 10


@pytest.mark.parametrize("metric, patience, min_delta, restored, stopped", [  # accuracy 0.50 0.60 0.605 0.608 0.62 ...
    ("val_accuracy", 2, 0.0, 5, 7), ("val_accuracy", 2, 0.01, 2, 4), ("val_accuracy", 1, 0.0, 5, 6),
    ("val_accuracy", 3, 0.005, 8, 8), ("val_loss", 2, 0.0, 5, 7), ("val_loss", 2, 0.01, 2, 4),
    ("val_loss", 1, 0.004, 3, 4)])
def test_replay_reproduces_the_training_loop_with_min_delta(monkeypatch, metric, patience, min_delta, restored,
                                                             stopped):
    """harness.run.train's own loop on a tiny model, its validation scores scripted so min_delta matters
    (and its training steps skipped: only the loop's stopping rule is under test)."""
    torch = pytest.importorskip("torch")
    from harness.run import train
    from harness.run.packing import Inputs
    from harness.study import TrainSpec
    from test_train import signal_task
    from tiny import tiny_model

    accuracy = iter([0.50, 0.60, 0.605, 0.608, 0.62, 0.61, 0.615, 0.63])

    def scripted(model, inputs, rows, labels):
        acc = next(accuracy)
        return {"loss": 1 - acc, "accuracy": acc, "f1": acc, "logits": torch.zeros(len(rows), 2)}

    monkeypatch.setattr(train, "evaluate", scripted)
    monkeypatch.setattr(train, "train_step", lambda model, inputs, batch, y, micro: torch.zeros(2))
    enc, labels = signal_task(12, False, 0)
    spec = TrainSpec(metric=metric, patience=patience, min_delta=min_delta, warmup_ratio=0.0, schedule="constant")
    out = train.train_run(tiny_model("bert"), Inputs(enc, None, torch.device("cpu")), labels, np.arange(8),
                          np.arange(8, 12), np.arange(0), lr=1e-3, batch_size=8, epochs=8, seed=0, spec=spec)
    assert (out.best_epoch, len(out.history)) == (restored, stopped)
    replayed = diagnostics.replay(out.history, patience, metric, min_delta, budget=8)
    assert (replayed["restored_epoch"], replayed["stop_epoch"]) == (restored, stopped)
    assert replayed["fired"] == (stopped < 8)


VAL = kept.ValidationSet(labels=np.array([0, 1, 1, 0]), n_classes=2)
VAL3 = kept.ValidationSet(labels=np.array([0, 1, 2, 0]), n_classes=3)  # three classes: not rebuilt


def run(status: str, test_pred: str, val_correct: str | None = None, val_pred: str | None = None) -> dict:
    row = epoch(1, 0.6, val_correct) | ({"val_pred": val_pred} if val_pred else {})
    return {"status": status, "best_epoch": 1, "history": [row], "test": {"pred": test_pred}}


@pytest.mark.parametrize("record, val, flag", [
    (run("ok", "0101", val_pred="0110"), None, None),
    ({"status": "failed", "history": [], "test": {}}, None, "failed"),
    ({"status": "diverged", "history": [{"epoch": 1, "train_loss": math.nan}], "test": {}}, None, "diverged"),
    ({"status": "ok", "history": [epoch(1, 0.6, val_loss=math.inf)], "test": {}}, None, "diverged"),
    (run("collapsed", "1111", val_pred="1111"), None, "collapsed"),
    (run("ok", "0101", val_pred="2222"), None, "collapsed"),  # collapsed on validation, not on test
    (run("collapsed", "1111", val_pred="0110"), None, None),  # one class on test only: kept
    (run("collapsed", "1111"), VAL3, None),  # validation predictions unknowable: the test set may not decide
    (run("collapsed", "1111"), None, "collapsed"),  # no validation set given: the stored status, as before
    (run("ok", "2222"), None, None),
    (run("ok", "0101", val_correct="0110"), VAL, "collapsed"),  # rebuilt: predicted 1, 1, 1, 1
    (run("ok", "0101", val_correct="1111"), VAL, None),  # rebuilt: the labels 0, 1, 1, 0
    (run("ok", "0101", val_correct="0110"), VAL3, None),
    ({"status": "pruned", "history": [epoch(1, 0.6)], "test": {}}, None, None),
])
def test_degenerate(record, val, flag):
    assert kept.degenerate(record, val) == flag


def test_validation_set_from_splits():
    val = kept.ValidationSet.from_splits({"val_labels": "0110", "class_names": ["neg", "pos"],
                                                 "val_groups": ["a", "a", "b", "c"]})
    assert val.labels.tolist() == [0, 1, 1, 0] and val.n_classes == 2 and val.groups.tolist() == ["a", "a", "b", "c"]
    assert kept.ValidationSet.from_splits({}) == kept.ValidationSet()


def test_collapsed_rate_per_cell():
    runs = pd.DataFrame({"cell": ["a"] * 4 + ["b"] * 2, "val_collapsed": [True, False, None, False, None, None]})
    table = diagnostics.collapsed_rate(runs).set_index("cell")
    assert table.loc["a", ["judged", "collapsed", "rate"]].tolist() == [3, 1, pytest.approx(1 / 3)]
    assert (table.loc["a", "lo"], table.loc["a", "hi"]) == pytest.approx(wilson_interval(1, 3))
    assert table.loc["b", "judged"] == 0 and math.isnan(table.loc["b", "rate"])


def test_fixture_store_collapse_on_validation_differs_from_test():
    """The stored runs (binary): 20 evaluation runs one-class on test; on validation 21, 5 of them differ."""
    val = kept.ValidationSet.from_splits(json.loads((STORE / "splits.json").read_text()))
    evals = [json.loads(line) for line in (STORE / "runs.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["role"] == "eval"]
    on_val = [kept.degenerate(r, val) == "collapsed" for r in evals]
    on_test = [len(set(r["test"]["pred"])) == 1 for r in evals]
    assert (sum(on_test), sum(on_val), sum(a != b for a, b in zip(on_val, on_test))) == (20, 21, 5)


@pytest.mark.parametrize("record, value", [
    ({"status": "ok", "objective": 0.7, "history": [epoch(1, 0.6)]}, 0.7),
    ({"status": "pruned", "objective": None, "history": [epoch(1, 0.62), epoch(2, 0.58)]}, 0.58),  # last reported
    ({"status": "failed", "history": []}, None),
    ({"status": "pruned", "history": [{"epoch": 1, "train_loss": 0.3}]}, None),
])
def test_trial_value(record, value):
    assert trial_value(record, "val_accuracy") == value


def test_pruned_trials_lower_the_expected_best_of_one():
    done = [{"status": "ok", "objective": v} for v in (0.70, 0.65)]
    pruned = [{"status": "pruned", "history": [epoch(1, v)]} for v in (0.55, 0.58)]
    values = [trial_value(r, "val_accuracy") for r in done + pruned]
    assert expected_max(values, 1) == pytest.approx(0.62)  # 0.675 with the survivors only


def test_correct_drops_applies_holm_over_kept_evaluation_runs():
    runs = pd.DataFrame({"role": ["eval", "eval", "eval", "tune", "eval"],
                         "flag": [None, None, None, None, "collapsed"],
                         "drop_p": [0.01, 0.02, 0.04, 0.001, 0.001],
                         "verdict": ["real drop", "real drop", "real drop", "real drop", "real drop"]})
    out = diagnostics.correct_drops(runs)
    assert out["drop_p_holm"].tolist()[:3] == pytest.approx([0.03, 0.04, 0.04])
    assert out["verdict"].tolist() == ["real drop", "real drop", "real drop", "real drop", "real drop"]
    out = diagnostics.correct_drops(runs.assign(drop_p=[0.02, 0.03, 0.04, 0.001, 0.001]))
    assert out["verdict"].tolist()[:3] == ["within noise"] * 3  # Holm: 0.06, 0.06, 0.06
    assert out["verdict"].tolist()[3:] == ["real drop", "real drop"] and math.isnan(out["drop_p_holm"][3])


def test_run_row_and_cell_summary_keep_flagged_runs_out():
    base = {"cell": "c", "role": "eval", "val_size": 200, "best_epoch": 2, "stopped_epoch": 3, "epochs": 3}
    good = base | {"seed": 1, "status": "ok", "test": {"pred": "01"},
                   "history": [epoch(1, 0.7), epoch(2, 0.9, "1" * 180 + "0" * 20),
                               epoch(3, 0.775, "0" * 25 + "1" * 155 + "0" * 20)]}
    bad = base | {"seed": 2, "status": "collapsed", "test": {"pred": "11"},
                  "history": [epoch(1, 0.5), epoch(2, 0.5) | {"val_pred": "1" * 200}, epoch(3, 0.2)]}
    rows = pd.DataFrame([diagnostics.run_row(good), diagnostics.run_row(bad)])
    assert rows.loc[0, "verdict"] == "real drop" and rows.loc[0, "p1_stop"] == 3
    assert rows["val_collapsed"].tolist() == [None, True]
    assert rows.loc[0, "p5_fired"] is None  # a 3-epoch budget: patience 5 cannot fire
    summary = diagnostics.cell_summary(rows).iloc[0]
    assert (summary["runs"], summary["collapsed"], summary["real_drops"]) == (2, 1, 1)
    assert summary["drop"] == pytest.approx(0.125)  # the collapsed run's drop of 0.3 is not averaged in
    assert summary["peak_epoch"] == 2
    assert rows.loc[0, "peak_after_min_loss"] == 1  # every val_loss equal: the minimum is the first epoch
    assert (summary["p1_decided"], summary["p1_fired"]) == (1, 1)
    assert summary["p5_decided"] == 0 and math.isnan(summary["p5_fired"]) and math.isnan(summary["p5_cost"])


def test_run_row_passes_min_delta_to_the_replay():
    history = [epoch(i + 1, a) for i, a in enumerate([0.50, 0.60, 0.605, 0.608, 0.62])]
    record = {"cell": "c", "role": "eval", "seed": 1, "status": "ok", "best_epoch": 2, "epochs": 5,
              "history": history, "test": {}}
    assert diagnostics.run_row(record, patiences=(2,))["p2_fired"] is False
    strict = diagnostics.run_row(record, patiences=(2,), min_delta=0.01)
    assert (strict["p2_fired"], strict["p2_stop"]) == (True, 4)
