"""On a GPU: training samples/s and model FLOPs utilisation of full fine-tuning in bf16.

A DistilBERT-sized classifier (DistilBertConfig defaults: 6 blocks, width 768,
66M parameters; random weights, since throughput does not depend on them and
no hub is reachable) is fine-tuned at max_length 128 on the benchmark's real
reviews, by the harness's training loop and by the peer's Trainer, same data,
batch size, learning rate and epochs, in one process on one card.

Both sides are timed between the ends of consecutive epochs after the first
(warm-up, cuDNN/cuBLAS heuristics and any compilation stay out), each interval
holding one training epoch and one validation pass.

MFU = model FLOPs / (interval x peak), model FLOPs per sequence of T real tokens
= 6 N T + 12 L T^2 d (N non-embedding parameters, L blocks of width d; the
second term is attention's QK^T and AV, forward and backward), as in
Chinchilla (Hoffmann et al. 2022, appendix F) and PaLM (Chowdhery et al. 2022,
appendix B). Padding is not counted: it is work, but not model work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                          DistilBertConfig, Trainer, TrainerCallback, TrainingArguments)

from bench.cells import N_CLASSES, BenchData, train_spec
from harness.modeling import encoder_parts, load_classifier, model_path, tokenize
from harness.train import Inputs, train_run

# dense bf16 peak without sparsity, from NVIDIA's H100/H200 datasheets (SXM)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}
MAX_LENGTH, EPOCHS, LR, VAL = 128, 5, 5e-5, 256


def peak_flops(device: torch.device) -> float | None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def distilbert_sized(tokenizer_from: str, directory: str, **shrink) -> str:
    """A randomly initialised DistilBERT-sized classifier saved with ``tokenizer_from``'s
    tokenizer (the bert-base-uncased vocabulary both use), so both sides load it from disk."""
    tokenizer = AutoTokenizer.from_pretrained(model_path(tokenizer_from))
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, num_labels=N_CLASSES, **shrink)  # shrink: tests
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def model_flops(model: torch.nn.Module, lengths: np.ndarray) -> float:
    """Training FLOPs of one pass over sequences of ``lengths`` real tokens (formula above)."""
    base, _, blocks = encoder_parts(model)
    embedding = sum(p.numel() for p in base.embeddings.parameters())
    n = sum(p.numel() for p in model.parameters()) - embedding
    d = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
    lengths = lengths.astype(np.float64)
    return float(np.sum(6 * n * lengths + 12 * len(blocks) * lengths ** 2 * d))


def steady_seconds(ends: list[float]) -> float:
    """Mean time between consecutive epoch ends, the first epoch (warm-up) left out."""
    return (ends[-1] - ends[0]) / (len(ends) - 1)


def harness_side(path: str, data: BenchData, train: np.ndarray, val: np.ndarray, device: torch.device,
                 batch: int, compile_model: bool) -> tuple[float, int]:
    """(seconds per steady epoch, host-device syncs in all) for the harness's loop."""
    rows = np.concatenate([train, val])
    encodings = tokenize(path, [data.texts[i] for i in rows], MAX_LENGTH)
    model = load_classifier(path, N_CLASSES, 0)
    if compile_model:
        model = torch.compile(model, dynamic=True)  # one graph for every bucket width
    ends = []

    def on_epoch(epoch: int, row: dict) -> bool:
        ends.append(time.perf_counter())  # after the epoch's validation, which read the loss back
        return False

    spec = dataclasses.replace(train_spec(), patience=EPOCHS + 1)  # throughput: no early stop
    with sync_counter(device) as syncs:
        train_run(model, Inputs(encodings, None, device), data.labels[rows], np.arange(len(train)),
                  np.arange(len(train), len(rows)), np.array([], dtype=np.int64), lr=LR, batch_size=batch,
                  epochs=EPOCHS, seed=0, spec=spec, on_epoch=on_epoch)
    return steady_seconds(ends), sum("synchroniz" in str(w.message) for w in syncs)


@contextlib.contextmanager
def sync_counter(device: torch.device):
    """Host-device synchronisations CUDA's sync debug mode reports inside the block (as warnings)."""
    if device.type != "cuda":
        yield []
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode("default")


class EpochEnds(TrainerCallback):
    def __init__(self, device: torch.device) -> None:
        self.device, self.ends = device, []

    def on_evaluate(self, args, state, control, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.ends.append(time.perf_counter())


def peer_side(path: str, data: BenchData, train: np.ndarray, val: np.ndarray, device: torch.device,
              batch: int) -> float:
    """Seconds per steady epoch for the peer's Trainer (bf16, evaluation every epoch, no saving)."""
    tokenizer = AutoTokenizer.from_pretrained(path)

    def encode(rows):
        features = tokenizer([data.texts[i] for i in rows], truncation=True, max_length=MAX_LENGTH)
        return [{**{k: v[j] for k, v in features.items()}, "labels": int(data.labels[r])}
                for j, r in enumerate(rows)]

    ends = EpochEnds(device)
    with tempfile.TemporaryDirectory() as out_dir:
        args = TrainingArguments(output_dir=out_dir, num_train_epochs=EPOCHS, learning_rate=LR, seed=0,
                                 per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
                                 max_grad_norm=1.0, eval_strategy="epoch", save_strategy="no",
                                 bf16=device.type == "cuda", use_cpu=device.type == "cpu",
                                 report_to="none", disable_tqdm=True)
        trainer = Trainer(model_init=lambda: AutoModelForSequenceClassification.from_pretrained(
                              path, num_labels=N_CLASSES), args=args,
                          train_dataset=encode(train), eval_dataset=encode(val),
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=[ends])
        trainer.train()
    return steady_seconds(ends.ends)


def gpu_report(data: BenchData, tokenizer_from: str, device: torch.device, compile_model: bool,
               batch: int = 256, **shrink) -> dict:
    """Samples/s and MFU of both sides, and the harness compiled too when ``compile_model``."""
    train, val = data.pool[:-VAL], data.pool[-VAL:]
    peak = peak_flops(device)
    report = {"gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "model": "DistilBERT-sized (66M, random init)",
              "max_length": MAX_LENGTH, "batch_size": batch, "epochs": EPOCHS, "train_rows": int(len(train)),
              "peak_bf16_flops": peak}
    with tempfile.TemporaryDirectory() as directory:
        path = distilbert_sized(tokenizer_from, directory, **shrink)
        lengths = tokenize(path, [data.texts[i] for i in train], MAX_LENGTH).lengths
        flops = model_flops(load_classifier(path, N_CLASSES, 0), lengths)  # per epoch, either side
        for name, compiled in [("harness", False), ("peer", None)] + ([("harness_compiled", True)] * compile_model):
            try:
                if compiled is None:
                    seconds = peer_side(path, data, train, val, device, batch)
                else:
                    seconds, syncs = harness_side(path, data, train, val, device, batch, compiled)
                    report[f"{name}_syncs"] = f"{syncs} in {EPOCHS * -(-len(train) // batch)} steps, {EPOCHS} epochs"
            except Exception as exc:  # noqa: BLE001 - e.g. torch.compile failing on this card: keep the rest
                report[f"{name}_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                continue
            report[f"{name}_samples_s"] = len(train) / seconds
            report[f"{name}_mfu"] = flops / seconds / peak if peak else None
            print(f"gpu {name}: {report[f'{name}_samples_s']:.0f} samples/s, MFU {report[f'{name}_mfu']}",
                  file=sys.stderr, flush=True)
    return report
