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

from harness import packing
from harness.metrics import accuracy, macro_f1
from harness.modeling import Encodings, autocast, pad
from harness.packing import Layout, bucket_width, pack
from harness.study import TrainSpec


class Inputs:
    """Model inputs for a batch of rows: token ids, or cached frozen-prefix states.

    ``layout`` (harness.packing) lays each batch out padded to its longest row (the default),
    bucketed to a few fixed widths, or packed end to end without padding; ``path`` names the
    layout that runs here (packed falls back to padded where its attention kernel is missing).
    A packed layout needs the model readied by ``attach``, which ``train_run`` and ``predict`` do.
    """

    def __init__(self, encodings: Encodings, states: torch.Tensor | None, device: torch.device,
                 layout: Layout = Layout()) -> None:
        self.encodings = encodings
        self.device = device
        self.states = None if states is None else states.to(device)
        # every text padded once, (N, T_max) int32 on the host: a batch is then one indexing
        # operation, not a Python loop over its rows while the device waits for its next step
        self.ids = pad(encodings, np.arange(len(encodings.ids)))[0].int() if states is None else None
        self.width = (self.ids if states is None else self.states).shape[1]  # no batch is wider
        self.layout = layout
        self.kernel, self.path = packing.choose_kernel(layout, device)
        self.position_offset = 0  # of the first token's position id, set by attach

    def attach(self, model: nn.Module) -> None:
        """Ready ``model`` for this layout's batches (only packed ones need it); repeatable."""
        if self.kernel is not None:
            packing.attach(model, self.kernel)
            self.position_offset = packing.position_offset(model)

    def __call__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        if self.kernel is not None:
            return self.packed(rows)
        lengths = self.encodings.lengths[rows]
        width = int(lengths.max())
        if self.layout.kind == "bucketed":  # a few fixed widths: a compiled graph is reused
            width = min(bucket_width(width, self.layout.widths), self.width)
        if self.states is None:
            ids = self.ids[torch.from_numpy(np.asarray(rows, dtype=np.int64)), :width].long()
            out = {"input_ids": ids.to(self.device, non_blocking=True)}
        else:
            out = {"inputs_embeds": self.states[to_device(rows, self.device), :width]}
        width = out.get("input_ids", out.get("inputs_embeds")).shape[1]
        # The mask is made here, on the host, as SDPA's (B, 1, 1, T) boolean (True = attend), which
        # transformers passes on as it is: from a 2D mask it would test mask.all() on the device,
        # a host-device synchronisation every step. A batch without padding needs no mask at all
        # (and SDPA may then pick its flash kernel).
        if (lengths >= width).all():
            return out
        mask = torch.from_numpy(np.arange(width)[None, :] < lengths[:, None])  # (B, T)
        return out | {"attention_mask": mask[:, None, None, :].to(self.device, non_blocking=True)}

    def packed(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The rows end to end as one sequence (1, sum of lengths), with each row's positions and
        the cu_seqlens that keep attention inside it (harness.packing.pack)."""
        cu, seq, pos = pack(np.minimum(self.encodings.lengths[rows], self.width))
        flat = np.asarray(rows, dtype=np.int64)[seq]  # (T,) the row of each token
        if self.states is None:
            ids = self.ids[torch.from_numpy(flat), torch.from_numpy(pos)].long()
            positions = torch.from_numpy(pos + self.position_offset)[None]
            out = {"input_ids": ids[None].to(self.device, non_blocking=True),
                   "position_ids": positions.to(self.device, non_blocking=True)}
        else:
            out = {"inputs_embeds": self.states[to_device(flat, self.device), to_device(pos, self.device)][None]}
        cu = torch.from_numpy(cu).to(self.device, non_blocking=True)
        # the width bounds every sequence: a fixed bound sizes the kernel without reading cu back
        return out | {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": self.width,
                      "max_length_k": self.width}


def to_device(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Row indices on ``device`` without waiting for it: ``torch.as_tensor(x, device=cuda)``
    copies with a stream synchronisation, once per step; from pageable host memory a
    non-blocking copy is staged at once, so ``rows`` may change afterwards."""
    return torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(device, non_blocking=True)


@dataclass
class RunOutput:
    history: list[dict] = field(default_factory=list)  # one dict per epoch
    best_epoch: int = 0
    status: str = "ok"  # ok | diverged | collapsed | pruned
    test: dict = field(default_factory=dict)
    held_test: dict = field(default_factory=dict)  # see train_run's held_rows
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

    ``held_rows``: a run that finishes (ok or collapsed) is also scored on these rows, into ``held_test``
    (never into ``test`` or the status): the test score of a tuning run that an evaluation
    run may turn out to repeat (``harness.execute.reusable``), scored as ``test`` would be.

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
               "val_correct": bits(val["logits"].argmax(-1).numpy() == labels[val_rows]),
               "val_pred": "".join(map(str, val["logits"].argmax(-1).tolist())),
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
    if best_state is not None:
        model.load_state_dict(best_state)  # the best epoch's weights, for the one test evaluation
    restored = next((h for h in out.history if h["epoch"] == out.best_epoch), None)
    if out.status == "ok" and restored is not None and is_collapsed(restored["val_pred"]) \
            and len(np.unique(labels[val_rows])) > 1:
        out.status = "collapsed"  # judged on validation: the test set plays no part in which runs count
    if len(test_rows) and out.status in ("ok", "collapsed"):
        out.test = score_test(model, inputs, test_rows, labels)
    if held_rows is not None and len(held_rows) and out.status in ("ok", "collapsed"):
        out.held_test = score_test(model, inputs, held_rows, labels)
    out.seconds = time.perf_counter() - started
    return out


def score_test(model: nn.Module, inputs: Inputs, rows: np.ndarray, labels: np.ndarray) -> dict:
    """The one test evaluation of a run: metrics, per-example predictions and positive-class probabilities."""
    test = evaluate(model, inputs, rows, labels)
    pred = test["logits"].argmax(-1).numpy()
    probs = torch.softmax(test["logits"], -1)
    out = {"loss": test["loss"], "accuracy": test["accuracy"], "f1": test["f1"], "pred": "".join(map(str, pred)),
           "prob": [round(float(p), 5) for p in probs[:, -1]]}  # the last (positive) class's probability
    if probs.shape[1] > 2:  # every class's, for calibration with three classes or more
        out["probs"] = [[round(float(p), 5) for p in row] for row in probs]
    return out


def is_collapsed(pred: str) -> bool:
    """Every prediction the same class (a stored string of one digit per example)."""
    return len(set(pred)) == 1


def bits(mask: np.ndarray) -> str:
    """Per-example correctness as a compact '0'/'1' string (McNemar between epochs needs it)."""
    return "".join("1" if m else "0" for m in mask)
