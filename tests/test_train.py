"""The training loop: early stopping restores the best epoch's weights; the test set is scored once."""

import numpy as np
import torch

from harness.run.modeling import Encodings
from harness.study import TrainSpec
from harness.run.packing import Inputs
from harness.run.train import batches, evaluate, train_run
from tiny import tiny_model

CPU = torch.device("cpu")


def signal_task(n: int, flip: bool, seed: int) -> tuple[Encodings, np.ndarray]:
    """Token 5 means class 0 and token 6 class 1; ``flip`` swaps the rule (a validation set that
    disagrees with training, so validation loss rises as the model learns)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    ids = [np.array([0, 5 + (y ^ flip)] + list(rng.integers(10, 60, size=6)) + [2], dtype=np.int32)
           for y in labels]
    return Encodings(ids, np.array([len(x) for x in ids]), pad_id=1), labels


def combined(n_train=64, n_val=32, n_test=32, flip_val=True):
    tr, ytr = signal_task(n_train, False, 0)
    va, yva = signal_task(n_val, flip_val, 1)
    te, yte = signal_task(n_test, False, 2)
    enc = Encodings(tr.ids + va.ids + te.ids, np.concatenate([tr.lengths, va.lengths, te.lengths]), 1)
    rows = np.arange(n_train + n_val + n_test)
    return enc, np.concatenate([ytr, yva, yte]), rows[:n_train], rows[n_train:n_train + n_val], rows[-n_test:]


def test_early_stopping_restores_the_best_epoch():
    enc, labels, train, val, test = combined()
    model = tiny_model("bert")
    spec = TrainSpec(metric="val_loss", patience=2, warmup_ratio=0.0, schedule="constant")
    out = train_run(model, Inputs(enc, None, CPU), labels, train, val, test, lr=3e-3, batch_size=16,
                    epochs=10, seed=0, spec=spec)
    losses = [h["val_loss"] for h in out.history]
    assert out.best_epoch == int(np.argmin(losses)) + 1
    assert len(out.history) == out.best_epoch + spec.patience < 10  # stopped early, patience epochs later
    restored = evaluate(model, Inputs(enc, None, CPU), val, labels)
    assert restored["loss"] == losses[out.best_epoch - 1] != losses[-1]
    # the test set is scored at the restored weights, not the last epoch's
    assert out.test["accuracy"] == evaluate(model, Inputs(enc, None, CPU), test, labels)["accuracy"]
    assert len(out.test["pred"]) == len(test)


def test_history_has_every_metric_each_epoch():
    enc, labels, train, val, test = combined()
    out = train_run(tiny_model("distilbert"), Inputs(enc, None, CPU), labels, train, val, test[:0], lr=1e-3,
                    batch_size=16, epochs=2, seed=0, spec=TrainSpec(patience=5))
    assert [h["epoch"] for h in out.history] == [1, 2]
    for h in out.history:
        assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1", "val_correct"} <= set(h)
        assert len(h["val_correct"]) == len(val)
        assert abs(h["val_accuracy"] - h["val_correct"].count("1") / len(val)) < 1e-12
    assert out.test == {}  # no test rows given: nothing scored


def test_same_seed_same_run():
    enc, labels, train, val, test = combined()
    runs = [train_run(tiny_model("roberta", seed=3), Inputs(enc, None, CPU), labels, train, val, test, lr=1e-3,
                      batch_size=8, epochs=2, seed=3, spec=TrainSpec()) for _ in range(2)]
    assert runs[0].history == runs[1].history and runs[0].test == runs[1].test


def test_batches_cover_every_row_once_with_similar_lengths():
    lengths = np.random.default_rng(0).integers(5, 60, size=1000)
    out = batches(np.arange(1000), lengths, 16, np.random.default_rng(1))
    assert sorted(np.concatenate(out).tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in out])
    assert spread < 5  # length-bucketed: little padding


def test_held_rows_are_scored_as_the_test_set_would_be_and_change_nothing_else():
    """A tuning run's held-back test score equals the test score of the same run trained for evaluation."""
    enc, labels, train, val, test = combined(flip_val=False)  # a run that learns: ok, not collapsed
    kwargs = dict(lr=1e-2, batch_size=8, epochs=3, seed=3, spec=TrainSpec())
    evaluated = train_run(tiny_model("bert", seed=3), Inputs(enc, None, CPU), labels, train, val, test, **kwargs)
    tuned = train_run(tiny_model("bert", seed=3), Inputs(enc, None, CPU), labels, train, val, test[:0],
                      held_rows=test, **kwargs)
    assert tuned.test == {} and tuned.status == "ok"  # held back: not the run's test score, not its status
    assert tuned.held_test == evaluated.test and len(tuned.held_test["pred"]) == len(test)
    assert tuned.held_last == evaluated.test_last and tuned.test_last == {}
    assert tuned.history == evaluated.history
    nothing = train_run(tiny_model("bert", seed=3), Inputs(enc, None, CPU), labels, train, val, test[:0],
                        held_rows=test[:0], **kwargs)
    assert nothing.held_test == {}  # no test set (test_fraction = 0): nothing held


def test_the_last_epoch_is_scored_on_the_test_set_too_at_one_extra_pass(monkeypatch):
    """test_last holds the last epoch's weights' test evaluation, taken before the best epoch's are
    restored; test is unchanged; the extra pass is made only when the best epoch is not the last."""
    import copy

    from harness.run import train as train_module

    enc, labels, train, val, test = combined(n_test=24)  # a length no other pass has
    snapshots, passes = {}, []
    model = tiny_model("bert")

    def keep(epoch, row):
        snapshots[epoch] = copy.deepcopy(model.state_dict())
        return False

    real = train_module.predict
    monkeypatch.setattr(train_module, "predict", lambda m, i, rows, *a: passes.append(len(rows)) or real(m, i, rows, *a))
    spec = TrainSpec(metric="val_loss", patience=2, warmup_ratio=0.0, schedule="constant")
    out = train_run(model, Inputs(enc, None, CPU), labels, train, val, test, lr=3e-3, batch_size=16,
                    epochs=10, seed=0, spec=spec, on_epoch=keep)
    last = len(out.history)
    assert out.best_epoch < last and out.test_last["epoch"] == last
    assert passes.count(len(test)) == 2  # the restored weights' test pass and the last epoch's
    assert out.test["accuracy"] == evaluate(model, Inputs(enc, None, CPU), test, labels)["accuracy"]
    at_last = tiny_model("bert")
    at_last.load_state_dict(snapshots[last])
    scored = evaluate(at_last, Inputs(enc, None, CPU), test, labels)
    assert out.test_last["accuracy"] == scored["accuracy"] and out.test_last["loss"] == scored["loss"]
    assert out.test_last["pred"] == "".join(map(str, scored["logits"].argmax(-1).tolist()))
    assert set(out.test_last) == {"epoch", "loss", "accuracy", "f1", "pred"}


def test_a_run_whose_best_epoch_is_the_last_scores_the_test_set_once(monkeypatch):
    from harness.run import train as train_module

    enc, labels, train, val, test = combined(n_test=24, flip_val=False)
    passes = []
    real = train_module.predict
    monkeypatch.setattr(train_module, "predict", lambda m, i, rows, *a: passes.append(len(rows)) or real(m, i, rows, *a))
    out = train_run(tiny_model("bert", seed=3), Inputs(enc, None, CPU), labels, train, val, test, lr=1e-2,
                    batch_size=8, epochs=1, seed=3, spec=TrainSpec())
    assert out.best_epoch == 1 and passes.count(len(test)) == 1
    assert out.test_last == {"epoch": 1} | {k: out.test[k] for k in ("loss", "accuracy", "f1", "pred")}
