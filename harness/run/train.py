"""One training run, written out: epochs, per-epoch validation, early stopping, test once.

No training framework: the loop below is the whole of it, read top to bottom.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.records import collapsed, decode_classes, encode_classes, encode_correct, restored_row
from harness.run.modeling import autocast
from harness.run.packing import Inputs, to_device
from harness.stats.metrics import accuracy, macro_f1
from harness.study import TrainSpec


@dataclass
class RunOutput:
    history: list[dict] = field(default_factory=list)  # one dict per epoch
    best_epoch: int = 0
    status: str = "ok"  # ok | diverged | collapsed | pruned
    test: dict = field(default_factory=dict)
    test_last: dict = field(default_factory=dict)  # the test set scored with the last epoch's weights (chooses nothing)
    held_test: dict = field(default_factory=dict)  # see train_run's held_rows
    held_last: dict = field(default_factory=dict)  # held_rows scored with the last epoch's weights
    micro_batch: int = 0  # after any out-of-memory halving
    oom_retries: int = 0
    seconds: float = 0.0


def batches(rows: np.ndarray, lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (dynamic padding wastes little), in shuffled order."""
    rows = rows[rng.permutation(len(rows))]
    chunk = size * 50
    out = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[i:i + size] for i in range(0, len(part), size)]
    return [out[i] for i in rng.permutation(len(out))]


def make_optimizer(model: nn.Module, spec: TrainSpec, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    # fused: one kernel for the whole update on CUDA (the peer's Trainer defaults to it too)
    return torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay, fused=params[0].is_cuda or None)


def make_schedule(optimizer: torch.optim.Optimizer, spec: TrainSpec, total_steps: int):
    warmup = int(spec.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if spec.schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def predict(model: nn.Module, inputs: Inputs, rows: np.ndarray, batch_size: int = 128) -> torch.Tensor:
    """Logits (N, C) for ``rows`` in their given order, float32 on the CPU."""
    inputs.attach(model)
    model.eval()
    order = np.argsort(inputs.encodings.lengths[rows], kind="stable")
    logits = torch.empty((len(rows), model.config.num_labels))
    for start in range(0, len(rows), batch_size):
        part = order[start:start + batch_size]
        with autocast(inputs.device):
            out = model(**inputs(rows[part])).logits
        logits[torch.from_numpy(part)] = out.float().cpu()
    return logits


def evaluate(model: nn.Module, inputs: Inputs, rows: np.ndarray, labels: np.ndarray) -> dict:
    logits = predict(model, inputs, rows)
    y = torch.from_numpy(labels[rows])
    pred = logits.argmax(-1).numpy()
    return {"loss": float(F.cross_entropy(logits, y)), "accuracy": accuracy(labels[rows], pred),
            "f1": macro_f1(labels[rows], pred, logits.shape[1]), "logits": logits}


def train_step(model: nn.Module, inputs: Inputs, batch: np.ndarray, y: torch.Tensor,
               micro: int) -> torch.Tensor:
    """Forward and backward over ``batch`` in micro-batches of ``micro``.

    Returns (summed loss, correct predictions) as a device tensor of 2, read once per epoch.
    """
    total = torch.zeros(2, device=inputs.device)
    for start in range(0, len(batch), micro):
        part = batch[start:start + micro]
        target = y[to_device(part, inputs.device)]
        with autocast(inputs.device):
            logits = model(**inputs(part)).logits
        loss = F.cross_entropy(logits.float(), target, reduction="sum")
        (loss / len(batch)).backward()  # mean over the whole batch: accumulation is exact
        total += torch.stack([loss.detach(), (logits.argmax(-1) == target).sum().float()])
    return total


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


SMALL_TOP = 1_000_000  # trainable parameters: below this a CPU run uses one thread (see one_thread_for_small_tops)


def one_thread_for_small_tops(run: Callable[..., RunOutput]) -> Callable[..., RunOutput]:
    """On the CPU, train a small top (a head on cached states) with one intra-op thread.

    Its operations are too small to share: handing them between threads costs more than
    the work, and far more when other processes hold the cores (measured on 2 shared
    cores: 2.5 ms a head-only step with one thread, 21-47 ms with two).
    """

    @functools.wraps(run)
    def wrapper(model: nn.Module, inputs: Inputs, *args, **kwargs) -> RunOutput:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if inputs.device.type != "cpu" or inputs.states is None or trainable >= SMALL_TOP:
            return run(model, inputs, *args, **kwargs)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run(model, inputs, *args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


@one_thread_for_small_tops
def train_run(model: nn.Module, inputs: Inputs, labels: np.ndarray, train_rows: np.ndarray,
              val_rows: np.ndarray, test_rows: np.ndarray, *, lr: float, batch_size: int, epochs: int,
              seed: int, spec: TrainSpec,
              on_epoch: Callable[[int, dict], bool] | None = None,
              held_rows: np.ndarray | None = None) -> RunOutput:
    """Train, validate each epoch, stop early, restore the best epoch's weights, test once.

    The test set is also scored with the last epoch's weights (``test_last``), before the best
    epoch's are restored: the report's late-peak answer compares the two. It chooses nothing, and
    costs one more test pass only when the best epoch is not the last (else it is ``test``'s).

    ``held_rows``: a run that finishes (ok or collapsed) is also scored on these rows, into ``held_test``
    (never into ``test`` or the status): the test score of a tuning run that an evaluation
    run may turn out to repeat (``harness.run.execute.reusable``), scored as ``test`` would be.

    ``on_epoch(epoch, row)`` is called after each validation; returning True stops
    the run as pruned (Optuna reports to its pruner there). On an out-of-memory error the micro-batch is halved and the
    gradient accumulated over twice as many micro-batches, so the optimizer sees
    the same effective batch; only a micro-batch of 1 that does not fit fails.
    """
    started = time.perf_counter()
    model.to(inputs.device)
    inputs.attach(model)
    rng = np.random.default_rng(seed)
    y = torch.as_tensor(labels, device=inputs.device)
    optimizer = make_optimizer(model, spec, lr)
    steps_per_epoch = math.ceil(len(train_rows) / batch_size)
    schedule = make_schedule(optimizer, spec, epochs * steps_per_epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    out = RunOutput(micro_batch=batch_size)
    best_value, best_state, waited = None, None, 0
    sign = 1.0 if spec.metric == "val_loss" else -1.0  # lower sign*value is better
    for epoch in range(1, epochs + 1):
        model.train()
        sums = torch.zeros(2, device=inputs.device)  # (loss, correct) over the epoch
        for batch in batches(train_rows, inputs.encodings.lengths, batch_size, rng):
            while True:
                try:
                    sums += train_step(model, inputs, batch, y, out.micro_batch)
                    break
                except (torch.OutOfMemoryError, RuntimeError) as exc:
                    if not is_oom(exc) or out.micro_batch == 1:
                        raise
                    optimizer.zero_grad(set_to_none=True)
                    if inputs.device.type == "cuda":
                        torch.cuda.empty_cache()
                    out.micro_batch //= 2
                    out.oom_retries += 1
            if spec.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
        train_loss, train_correct = (sums / len(train_rows)).tolist()  # one host-device sync per epoch
        if not math.isfinite(train_loss):
            out.status = "diverged"
            out.history.append({"epoch": epoch, "train_loss": train_loss})
            break
        val = evaluate(model, inputs, val_rows, labels)
        # training loss and accuracy are running figures over the epoch, with dropout on
        row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_correct,
               "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_f1": val["f1"],
               "val_correct": encode_correct(val["logits"].argmax(-1).numpy() == labels[val_rows]),
               "val_pred": encode_classes(val["logits"].argmax(-1).numpy()),
               "lr": schedule.get_last_lr()[0]}
        out.history.append(row)
        value = sign * row[spec.metric]
        if best_value is None or value < best_value - spec.min_delta:
            best_value, out.best_epoch, waited = value, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
        if on_epoch is not None and on_epoch(epoch, row):
            out.status = "pruned"
            break
        if waited >= spec.patience:
            break
    restored = restored_row(out.history, out.best_epoch)
    if out.status == "ok" and restored and collapsed(decode_classes(restored["val_pred"])) \
            and len(np.unique(labels[val_rows])) > 1:
        out.status = "collapsed"  # judged on validation: the test set plays no part in which runs count
    finished = out.status in ("ok", "collapsed")
    scored = [(rows, name) for rows, name in ((test_rows, "test"), (held_rows, "held_test"))
              if finished and rows is not None and len(rows)]
    last, at_last = len(out.history), {}
    if out.best_epoch != last:  # the last epoch's weights are still in the model: score them first
        at_last = {name: last_scores(score_test(model, inputs, rows, labels), last) for rows, name in scored}
    if best_state is not None:
        model.load_state_dict(best_state)  # the best epoch's weights, for the one test evaluation
    for rows, name in scored:
        setattr(out, name, score_test(model, inputs, rows, labels))
    out.test_last = at_last.get("test") or (last_scores(out.test, last) if out.test else {})
    out.held_last = at_last.get("held_test") or (last_scores(out.held_test, last) if out.held_test else {})
    out.seconds = time.perf_counter() - started
    return out


def last_scores(test: dict, epoch: int) -> dict:
    """What a run keeps of its last epoch's test evaluation: the epoch, metrics and predictions."""
    return {"epoch": epoch} | {k: test[k] for k in ("loss", "accuracy", "f1", "pred")}


def score_test(model: nn.Module, inputs: Inputs, rows: np.ndarray, labels: np.ndarray) -> dict:
    """The one test evaluation of a run: metrics, per-example predictions and positive-class probabilities."""
    test = evaluate(model, inputs, rows, labels)
    pred = test["logits"].argmax(-1).numpy()
    probs = torch.softmax(test["logits"], -1)
    out = {"loss": test["loss"], "accuracy": test["accuracy"], "f1": test["f1"], "pred": encode_classes(pred),
           "prob": [round(float(p), 5) for p in probs[:, -1]]}  # the last (positive) class's probability
    if probs.shape[1] > 2:  # every class's, for calibration with three classes or more
        out["probs"] = [[round(float(p), 5) for p in row] for row in probs]
    return out
