"""On a GPU: training samples/s and model FLOPs utilisation of full fine-tuning in bf16.

A DistilBERT-sized classifier (DistilBertConfig defaults: 6 blocks, width 768,
66M parameters; random weights, since throughput does not depend on them and
no hub is reachable) is fine-tuned at max_length 128 on the benchmark's real
reviews, by the harness's training loop in several variants (batch layout,
compilation, batch size: ``VARIANTS``) and by the peer's Trainer, same data,
learning rate and epochs, in one process per side on one card.

Both sides are timed between the ends of consecutive epochs after the first
(warm-up, cuDNN/cuBLAS heuristics and any compilation stay out), each interval
holding one training epoch and one validation pass; the host-device syncs are
counted over the same epochs. The training rows are a
multiple of every batch size, so that each epoch has the same batch shapes and a
compiled variant compiles in its first epoch only.

MFU = model FLOPs / (interval x peak), model FLOPs per sequence of T real tokens
= 6 N T + 12 L T^2 d (N non-embedding parameters, L blocks of width d; the
second term is attention's QK^T and AV, forward and backward), as in
Chinchilla (Hoffmann et al. 2022, appendix F) and PaLM (Chowdhery et al. 2022,
appendix B). Padding is not counted: it is work, but not model work.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
import warnings
from typing import Callable

import numpy as np
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                          DistilBertConfig, Trainer, TrainerCallback, TrainingArguments)

from bench.cells import N_CLASSES, BenchData, train_spec
from harness.run.modeling import encoder_parts, load_classifier, model_path, tokenize
from harness.run.packing import Layout, compile_blocks
from harness.run.packing import Inputs
from harness.run.train import train_run

# dense bf16 peak without sparsity, from NVIDIA's H100/H200 datasheets (SXM; the PCIe H100 is slower)
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12}
MAX_LENGTH, LR = 128, 5e-5
WIDTHS = (32, 64, 96, 128)  # bucket widths: 9% padding on the reviews in length-sorted batches of 256


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much each measurement trains: the full one on a GPU, a shrunken one for a dry run."""

    train_rows: int = 7168  # a multiple of 256 and 512 (of the 7,244 the pool leaves beside validation)
    val_rows: int = 256
    epochs: int = 5
    shrink: tuple = ()  # DistilBertConfig overrides: () is the real size
    batch_div: int = 1  # every batch size divided by this


DRY = Scale(train_rows=512, val_rows=64, epochs=2, batch_div=8,
            shrink=(("dim", 32), ("n_layers", 2), ("n_heads", 2), ("hidden_dim", 64)))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way the harness trains: ``compile`` is off, static (a graph per shape, ``dynamic=False``)
    or auto (static first, then symbolic in the dimensions that change)."""

    name: str
    layout: Layout = Layout()
    compile: str = "off"
    batch: int = 256


PACKED = Layout("packed")
VARIANTS = [  # in the order they run: what an interrupted run leaves is what matters most
    Variant("padded"),
    Variant("packed", PACKED),
    Variant("packed+compile", PACKED, "auto"),
    Variant("packed+compile", PACKED, "auto", 512),  # after its b256 run: the same graphs, mostly
    Variant("bucketed+compile", Layout("bucketed", WIDTHS), "static"),
    Variant("padded+compile", Layout(), "auto"),
    Variant("packed+compile", PACKED, "auto", 1024),  # the largest token budget per step
]


def peak_flops(device: torch.device) -> float | None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def distilbert_sized(tokenizer_from: str, directory: str, **shrink) -> str:
    """A randomly initialised DistilBERT-sized classifier saved with ``tokenizer_from``'s
    tokenizer (the bert-base-uncased vocabulary both use), so both sides load it from disk."""
    tokenizer = AutoTokenizer.from_pretrained(model_path(tokenizer_from))
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, num_labels=N_CLASSES, **shrink)  # shrink: dry runs
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


def sync_sites(caught: list) -> tuple[int, dict[str, int]]:
    """(synchronisations, the five commonest places they came from as file:line -> count)."""
    sites = collections.Counter(f"{os.path.basename(w.filename)}:{w.lineno}" for w in caught
                                if "synchroniz" in str(w.message))
    return sum(sites.values()), dict(sites.most_common(5))


def harness_side(path: str, data: BenchData, train: np.ndarray, val: np.ndarray, device: torch.device,
                 variant: Variant, epochs: int) -> dict:
    """Seconds per steady epoch and what ran, for the harness's loop in ``variant``."""
    rows = np.concatenate([train, val])
    encodings = tokenize(path, [data.texts[i] for i in rows], MAX_LENGTH)
    model = load_classifier(path, N_CLASSES, 0)
    if variant.compile != "off":
        compile_blocks(model, dynamic=False if variant.compile == "static" else None)
    inputs = Inputs(encodings, None, device, variant.layout)
    spec = dataclasses.replace(train_spec(), patience=epochs + 1)  # throughput: no early stop
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ends, marks = [time.perf_counter()], []
    with sync_counter(device) as caught:
        def on_epoch(epoch: int, row: dict) -> bool:
            ends.append(time.perf_counter())  # after the epoch's validation, which read the loss back
            marks.append(len(caught))  # syncs so far: those of the first epoch (compilation) are left out
            return False

        train_run(model, inputs, data.labels[rows], np.arange(len(train)), np.arange(len(train), len(rows)),
                  np.array([], dtype=np.int64), lr=LR, batch_size=variant.batch, epochs=epochs, seed=0,
                  spec=spec, on_epoch=on_epoch)
    syncs, sites = sync_sites(caught[marks[0]:])
    return {"path": inputs.path, "seconds": steady_seconds(ends[1:]), "first_epoch_s": ends[1] - ends[0],
            "syncs": syncs, "sync_sites": sites, "steps": (epochs - 1) * -(-len(train) // variant.batch),
            "max_memory_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None}


class EpochEnds(TrainerCallback):
    def __init__(self, device: torch.device) -> None:
        self.device, self.ends = device, []

    def on_evaluate(self, args, state, control, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.ends.append(time.perf_counter())


def peer_side(path: str, data: BenchData, train: np.ndarray, val: np.ndarray, device: torch.device,
              batch: int, epochs: int, sampling: str = "random") -> dict:
    """Seconds per steady epoch for the peer's Trainer (bf16, evaluation every epoch, no saving);
    ``sampling`` is its train_sampling_strategy (random by default; group_by_length batches
    similar lengths, as the harness does)."""
    tokenizer = AutoTokenizer.from_pretrained(path)

    def encode(rows):
        features = tokenizer([data.texts[i] for i in rows], truncation=True, max_length=MAX_LENGTH)
        return [{**{k: v[j] for k, v in features.items()}, "labels": int(data.labels[r])}
                for j, r in enumerate(rows)]

    ends = EpochEnds(device)
    with tempfile.TemporaryDirectory() as out_dir:
        args = TrainingArguments(output_dir=out_dir, num_train_epochs=epochs, learning_rate=LR, seed=0,
                                 per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
                                 max_grad_norm=1.0, eval_strategy="epoch", save_strategy="no",
                                 bf16=device.type == "cuda", use_cpu=device.type == "cpu",
                                 train_sampling_strategy=sampling, report_to="none", disable_tqdm=True)
        trainer = Trainer(model_init=lambda: AutoModelForSequenceClassification.from_pretrained(
                              path, num_labels=N_CLASSES), args=args,
                          train_dataset=encode(train), eval_dataset=encode(val),
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=[ends])
        trainer.train()
    return {"path": f"Trainer, {sampling} sampling", "seconds": steady_seconds(ends.ends)}


def measure(name: str, side: str, run: Callable[[], dict], train_rows: int, flops: float, peak: float | None,
            batch: int) -> dict:
    """One variant's row: samples/s and MFU, or the error that stopped it (the rest still run)."""
    row = {"variant": name, "side": side, "batch": batch}
    try:
        row |= run()
    except Exception as exc:  # noqa: BLE001 - e.g. compilation failing on this card: keep the others
        row["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
        print(f"gpu {side} {name}: {row['error']}", file=sys.stderr, flush=True)
        return row
    row["samples_s"] = train_rows / row["seconds"]
    row["mfu"] = flops / row["seconds"] / peak if peak else None
    print(f"gpu {side} {name}: {row['samples_s']:.0f} samples/s, MFU {row['mfu']}, path {row['path']}",
          file=sys.stderr, flush=True)
    return row


def header(data: BenchData, device: torch.device, scale: Scale, path: str) -> tuple[dict, float]:
    """The run's description, and the model FLOPs of one training epoch (the same for every variant)."""
    train = data.pool[:scale.train_rows]
    lengths = tokenize(path, [data.texts[i] for i in train], MAX_LENGTH).lengths
    flops = model_flops(load_classifier(path, N_CLASSES, 0), lengths)
    return {"gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "model": "DistilBERT-sized (66M, random init)" if not scale.shrink else f"DistilBERT shrunk {scale.shrink}",
            "max_length": MAX_LENGTH, "epochs": scale.epochs, "train_rows": scale.train_rows,
            "mean_tokens": float(lengths.mean()), "flops_per_epoch": flops, "peak_bf16_flops": peak_flops(device),
            "torch": torch.__version__}, flops


def splits(data: BenchData, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    return data.pool[:scale.train_rows], data.pool[-scale.val_rows:]


def harness_rows(data: BenchData, tokenizer_from: str, device: torch.device, variants: list[Variant],
                 scale: Scale = Scale(), keep_going: Callable[[Variant], bool] = lambda v: True,
                 on_row: Callable[[dict, dict], None] = lambda head, row: None) -> dict:
    """Every variant in turn, in this one process; ``keep_going`` may skip one (a time budget),
    ``on_row`` sees each row as it comes (to save partial results)."""
    train, val = splits(data, scale)
    with tempfile.TemporaryDirectory() as directory:
        path = distilbert_sized(tokenizer_from, directory, **dict(scale.shrink))
        head, flops = header(data, device, scale, path)
        head["variants"], last = [], None
        for variant in variants:
            variant = dataclasses.replace(variant, batch=variant.batch // scale.batch_div)
            if not keep_going(variant):
                head["variants"].append({"variant": variant.name, "side": "harness", "batch": variant.batch,
                                         "skipped": "time budget"})
                continue
            if variant.compile != "off" and (variant.layout.kind, variant.compile) != last:
                torch._dynamo.reset()  # graphs of another layout or mode: start clean (same ones: reuse)
                last = (variant.layout.kind, variant.compile)
            head["variants"].append(measure(variant.name, "harness", lambda: harness_side(
                path, data, train, val, device, variant, scale.epochs), len(train), flops,
                head["peak_bf16_flops"], variant.batch))
            on_row(head, head["variants"][-1])
    return head


def peer_rows(data: BenchData, tokenizer_from: str, device: torch.device, samplings: list[str], batch: int = 256,
              scale: Scale = Scale(), keep_going: Callable[[str], bool] = lambda sampling: True,
              on_row: Callable[[dict, dict], None] = lambda head, row: None) -> dict:
    """The peer's Trainer with each train_sampling_strategy in turn, in this one process."""
    train, val = splits(data, scale)
    batch //= scale.batch_div
    with tempfile.TemporaryDirectory() as directory:
        path = distilbert_sized(tokenizer_from, directory, **dict(scale.shrink))
        head, flops = header(data, device, scale, path)
        head["variants"] = []
        for sampling in samplings:
            if not keep_going(sampling):
                head["variants"].append({"variant": f"trainer {sampling}", "side": "peer", "batch": batch,
                                         "skipped": "time budget"})
                continue
            with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs
                head["variants"].append(measure(f"trainer {sampling}", "peer", lambda: peer_side(
                    path, data, train, val, device, batch, scale.epochs, sampling), len(train), flops,
                    head["peak_bf16_flops"], batch))
            on_row(head, head["variants"][-1])
    return head


def gpu_report(data: BenchData, tokenizer_from: str, device: torch.device, compile_model: bool,
               batch: int = 256) -> dict:
    """``python -m bench``'s GPU figures: the harness eager (padded, packed), compiled too when
    ``compile_model``, and the peer's default Trainer, all at ``batch``."""
    variants = [dataclasses.replace(v, batch=batch) for v in VARIANTS
                if v.batch == 256 and (compile_model or v.compile == "off")]
    report = harness_rows(data, tokenizer_from, device, variants)
    report["variants"] += peer_rows(data, tokenizer_from, device, ["random"], batch)["variants"]
    report["batch_size"] = batch
    return report
