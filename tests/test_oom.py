"""Out of memory: the micro-batch halves and gradients accumulate, so the optimizer's batch is unchanged.

The CUDA out-of-memory error is injected on the CPU: the model's forward raises
``torch.OutOfMemoryError`` when a micro-batch holds more tokens than a budget,
the way activation memory grows on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.run import train
from harness.run.display import Display
from harness.run.modeling import Encodings
from harness.run.runner import run_study
from harness.store import Results
from harness.study import TrainSpec, load_study
from harness.run.packing import Inputs
from harness.run.train import train_run
from tiny import tiny_model

CPU = torch.device("cpu")
SMOKE = str(Path(__file__).parents[1] / "studies" / "smoke.toml")


def task(n: int = 96, seed: int = 0) -> tuple[Encodings, np.ndarray]:
    """Token 5 means class 0, token 6 class 1, with 3 to 20 filler tokens (lengths vary)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    ids = [np.array([0, 5 + y, *rng.integers(10, 60, size=rng.integers(3, 21)), 2], dtype=np.int32)
           for y in labels]
    return Encodings(ids, np.array([len(x) for x in ids]), pad_id=1), labels


def oom_above(model: nn.Module, tokens: int) -> list[tuple[int, int]]:
    """Make ``model`` raise CUDA's out-of-memory error on a training micro-batch over ``tokens``.

    Returns the list of (rows, width) shapes it refused. Evaluation (no grad) always fits.
    """
    forward, refused = model.forward, []

    def guarded(**inputs):
        shape = tuple(inputs["input_ids"].shape)  # (B, T)
        if torch.is_grad_enabled() and shape[0] * shape[1] > tokens:
            refused.append(shape)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (injected)")
        return forward(**inputs)

    model.forward = guarded
    return refused


def no_dropout(model: nn.Module) -> nn.Module:
    """Dropout masks depend on the micro-batch shapes; without it the updates must match exactly."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


# plain SGD without clipping: the update is the gradient itself, so a wrong accumulation (a factor
# of 2, a lost micro-batch) shows in the weights; Adam's scale-free steps and clipping would hide it
SGD = TrainSpec(optimizer="sgd", max_grad_norm=0.0, patience=5)


def run(tokens: int | None, batch_size: int = 16):
    enc, labels = task()
    rows = np.arange(len(labels))
    model = no_dropout(tiny_model("bert", seed=1))
    refused = oom_above(model, tokens) if tokens is not None else []
    out = train_run(model, Inputs(enc, None, CPU), labels, rows[:64], rows[64:80], rows[80:], lr=0.05,
                    batch_size=batch_size, epochs=2, seed=1, spec=SGD)
    return out, refused, model


# token budgets: rows hold 6 to 23 tokens, a full batch of 16 up to 16 x 23; 60 fits 2 or 4 rows,
# 23 only a single row of the longest
@pytest.mark.slow
@pytest.mark.parametrize("tokens, batch_size", [(200, 16), (60, 16), (23, 16), (60, 32), (150, 8)])
def test_oom_halves_the_micro_batch_and_keeps_the_effective_batch(tokens, batch_size):
    reference, _, reference_model = run(None, batch_size)
    out, refused, model = run(tokens, batch_size)
    assert refused, "the budget should refuse at least one micro-batch"
    assert out.micro_batch < batch_size and out.micro_batch * 2 ** out.oom_retries == batch_size
    assert all(r * w > tokens for r, w in refused)
    # the optimizer saw the same batches: same losses, same weights, up to float summation order
    for got, want in zip(out.history, reference.history, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    for (name, got), want in zip(model.state_dict().items(), reference_model.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)
    assert out.status == reference.status and out.test["pred"] == reference.test["pred"]


@pytest.mark.slow
def test_oom_at_a_micro_batch_of_one_fails_the_run():
    with pytest.raises(torch.OutOfMemoryError):
        run(tokens=3)  # no row is that short


@pytest.mark.slow
def test_an_error_that_is_not_oom_is_not_retried():
    enc, labels = task()
    rows = np.arange(len(labels))
    model = tiny_model("bert")
    calls = []

    def broken(**inputs):
        calls.append(1)
        raise RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED")

    model.forward = broken
    with pytest.raises(RuntimeError, match="CUBLAS"):
        train_run(model, Inputs(enc, None, CPU), labels, rows[:64], rows[64:80], rows[80:], lr=1e-3,
                  batch_size=16, epochs=1, seed=0, spec=TrainSpec())
    assert len(calls) == 1


# --- through the runner: what the store records -----------------------------------------------

TINY_GRID = ["grid.data_sizes=[64]", "grid.freeze=[\"all\"]", "search.trials=2", "seeds.evaluate=[1]"]


def inject(monkeypatch, largest_micro_batch: int) -> None:
    """Every training step whose micro-batch exceeds ``largest_micro_batch`` runs out of memory."""
    step = train.train_step

    def guarded(model, inputs, batch, y, micro):
        if micro > largest_micro_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 MiB (injected)")
        return step(model, inputs, batch, y, micro)

    monkeypatch.setattr(train, "train_step", guarded)


@pytest.mark.slow
@pytest.mark.parametrize("largest", [4, 0], ids=["fits-at-4", "never-fits"])
def test_the_store_records_the_halving_or_the_failure_and_the_grid_goes_on(tmp_path, monkeypatch, largest):
    inject(monkeypatch, largest)
    study = load_study(SMOKE, TINY_GRID)
    records = [r.to_dict() for r in run_study(study, SMOKE, Results(tmp_path / "results"), Display(enabled=False))]
    # every trial was tried and none stopped the study; a search none of whose trials finished gets trials up to
    # twice its budget, then is untuned and never evaluated
    assert [(r["role"], r["trial"] if r["role"] == "tune" else r["seed"]) for r in records] == \
        ([("tune", 0), ("tune", 1), ("eval", 1)] if largest else [("tune", t) for t in range(4)])
    for r in records:
        if largest:
            assert r["status"] in ("ok", "collapsed", "pruned")
            assert r["micro_batch"] == largest and r["micro_batch"] * 2 ** r["oom_retries"] == \
                r["params"]["batch_size"]  # recorded; the tuned batch size is the effective one
        else:
            assert r["status"] == "failed"
            assert r["error"].startswith("out of memory even at micro-batch 1: OutOfMemoryError")
