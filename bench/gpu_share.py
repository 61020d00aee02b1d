"""On a GPU: small cells filling the card, and what the MLU ablation grid would cost there.

K at once. A classifier-only trial (the head on cached final-block states) keeps an
H100 mostly idle: its steps are a few small kernels each, paced by the host. The
harness runs K such trials at once as K worker processes sharing the card
(``python -m harness worker STUDY --processes K`` leaves them all on the one visible
GPU). Measured here with the same training function those workers call: K spawned
processes, each training the bench's head-only cell (500 reviews, 20 epochs, batch
32) trial after trial for a fixed window, all K windows together; throughput is
epochs per second summed over the K, against one process alone.

The grid. ``studies/mlu_ablation.toml`` at full scale: 56,000 reviews resampled
from the benchmark's 8,000 (so with their length distribution), a random-weight
DistilBERT-sized model. Timed here: the frozen-prefix pass over all texts, steady
epochs of a classifier-only run on all training rows and of full fine-tuning on a
sample of them, at batch 32; the whole grid is extrapolated from them (``extrapolate``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import tempfile
import time

import numpy as np
import torch

from bench.cells import CELLS, N_CLASSES, BenchData, train_spec
from bench.gpu import MAX_LENGTH, Scale, distilbert_sized
from harness.run.modeling import encoder_parts, freeze_, frozen_prefix, load_classifier, tokenize, top_of
from harness.run.packing import Layout
from harness.run.packing import Inputs
from harness.run.train import train_run

HEAD = CELLS["head-only"]
LR, BATCH = 1e-3, 32


def head_trial(path: str, inputs: Inputs, labels: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int,
               stop_at: float) -> int:
    """One classifier-only trial as a worker runs it (fresh head from ``seed``); stops after the
    epoch that ends past ``stop_at``. Returns the epochs trained."""
    model = load_classifier(path, N_CLASSES, seed)
    depth = len(encoder_parts(model)[2])  # every block frozen: the head alone trains
    freeze_(model, depth)
    done = []

    def on_epoch(epoch: int, row: dict) -> bool:
        done.append(epoch)
        return time.perf_counter() > stop_at  # stops the trial as "pruned"

    train_run(top_of(model, depth), inputs, labels, train, val, np.array([], dtype=np.int64), lr=LR,
              batch_size=BATCH, epochs=HEAD.epochs, seed=seed,
              spec=dataclasses.replace(train_spec(), patience=HEAD.epochs + 1), on_epoch=on_epoch)
    return len(done)


def share_worker(index: int, cache: str, ks: list[int], window: float, cores: int, barrier, results) -> None:
    """A spawned process: for each K in ``ks``, train trials for ``window`` seconds if index < K."""
    try:
        saved = torch.load(cache, weights_only=False)
        device = torch.device(saved["device"])
        inputs = Inputs(saved["encodings"], saved["states"], device)
        seed = 0
        for k in ks:
            torch.set_num_threads(max(1, cores // k))  # as harness.run.worker.launch shares the cores
            barrier.wait(timeout=120)
            if index < k:
                epochs, started = 0, time.perf_counter()
                while time.perf_counter() - started < window:
                    epochs += head_trial(saved["path"], inputs, saved["labels"], saved["train"], saved["val"], seed,
                                         started + window)
                    seed += 1
                memory = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
                results.put({"k": k, "index": index, "epochs": epochs, "seconds": time.perf_counter() - started,
                             "max_memory_gib": memory})
            barrier.wait(timeout=120)
    except Exception as exc:  # noqa: BLE001 - reported, and the parent stops waiting for this process
        results.put({"index": index, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        barrier.abort()


def k_at_once(data: BenchData, tokenizer_from: str, device: torch.device, ks: list[int], window: float,
              scale: Scale = Scale(), deadline: float = float("inf")) -> dict:
    """Epochs/s of K concurrent classifier-only trial loops for each K, against K = 1."""
    split = data.seed_split(HEAD.data_size, 0)
    rows = np.concatenate([split.train, split.val])
    with tempfile.TemporaryDirectory() as directory:
        path = distilbert_sized(tokenizer_from, directory, **dict(scale.shrink))
        encodings = tokenize(path, [data.texts[i] for i in rows], MAX_LENGTH)
        probe = load_classifier(path, N_CLASSES, 0)
        blocks = len(encoder_parts(probe)[2])
        states = frozen_prefix(probe, encodings, np.arange(len(rows)), [blocks], device)[blocks]  # (N, 1, H)
        cache = os.path.join(directory, "cache.pt")
        torch.save({"device": str(device), "encodings": encodings, "states": states,
                    "labels": data.labels[rows], "train": np.arange(len(split.train)),
                    "val": np.arange(len(split.train), len(rows)), "path": path}, cache)
        context = mp.get_context("spawn")  # CUDA cannot be forked
        barrier, results = context.Barrier(max(ks)), context.Queue()
        cores = len(os.sched_getaffinity(0))
        workers = [context.Process(target=share_worker, args=(i, cache, ks, window, cores, barrier, results))
                   for i in range(max(ks))]
        for w in workers:
            w.start()
        rows_out = collect(results, workers, sum(ks), deadline)
    return summarize_share(rows_out, ks, window)


def collect(results, workers: list, expected: int, deadline: float) -> list[dict]:
    """The workers' rows until all came, one failed, or ``deadline`` (time.time()); then stop them."""
    out = []
    while len(out) < expected and time.time() < deadline and not any("error" in r for r in out):
        try:
            out.append(results.get(timeout=2))
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                break
    for w in workers:
        w.join(timeout=5)
        if w.is_alive():
            w.terminate()
    return out


def summarize_share(rows: list[dict], ks: list[int], window: float) -> dict:
    """Per K: epochs/s summed over the processes, and the speed-up over one process alone."""
    per_k = {}
    for k in ks:
        mine = [r for r in rows if r.get("k") == k]
        if len(mine) < k:  # a process failed or the time ran out: no figure for this K
            continue
        memory = [r["max_memory_gib"] for r in mine if r["max_memory_gib"] is not None]
        per_k[str(k)] = {"processes": k, "epochs_s": sum(r["epochs"] / r["seconds"] for r in mine),
                         "max_memory_gib_per_process": max(memory) if memory else None}
    one = per_k.get("1", {}).get("epochs_s")
    for entry in per_k.values():
        entry["speedup"] = entry["epochs_s"] / one if one else None
    return {"cell": f"head-only: {HEAD.data_size} reviews, batch {BATCH}, {HEAD.epochs} epochs a trial",
            "window_s": window, "k": per_k, "errors": [r["error"] for r in rows if "error" in r]}


# --- the MLU ablation grid at full scale ------------------------------------------------------

MLU_ROWS = 56_000
MLU_SIZES = [500, 2000, 8000, 20000, "all"]
MLU_EPOCHS, MLU_FREEZE, MLU_RUNS = [3, 10, 20], ["all", 5, 4, 3, 2, 1, 0], 8 + 5  # trials + evaluation seeds
HEAD_EPOCHS = max(MLU_EPOCHS)
MLU_VAL, MLU_TEST = 0.05, 0.1
MLU_BLOCKS = 6  # distilbert-base-uncased: the grid's freezing depths count these
FULL = Layout("packed")  # the full fine-tuning cell's layout (the fastest the card runs: bench/gpu.py)


def epoch_seconds(model: torch.nn.Module, inputs: Inputs, labels: np.ndarray, train: np.ndarray,
                  val: np.ndarray, epochs: int = 3) -> tuple[float, float | None]:
    """(seconds per steady epoch, the first left out; peak GiB allocated) of ``model`` on ``train`` at batch 32."""
    ends = [time.perf_counter()]

    def on_epoch(epoch: int, row: dict) -> bool:
        ends.append(time.perf_counter())
        return False

    if inputs.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(inputs.device)
    train_run(model, inputs, labels, train, val, np.array([], dtype=np.int64), lr=LR, batch_size=BATCH,
              epochs=epochs, seed=0, spec=dataclasses.replace(train_spec(), patience=epochs + 1), on_epoch=on_epoch)
    memory = torch.cuda.max_memory_allocated(inputs.device) / 2 ** 30 if inputs.device.type == "cuda" else None
    return (ends[-1] - ends[1]) / (len(ends) - 2), memory


def mlu_slice(data: BenchData, tokenizer_from: str, device: torch.device, rows: int = MLU_ROWS,
              sample: int = 8000, scale: Scale = Scale(), full: Layout = FULL) -> dict:
    """Time the frozen-prefix pass over all ``rows``, a classifier-only run on all training rows, and
    full fine-tuning per training row on a ``sample`` of them, then extrapolate the grid."""
    rng = np.random.default_rng(0)
    picked = rng.choice(len(data.texts), size=rows, replace=True)  # the 8k reviews' length distribution
    texts, labels = [data.texts[i] for i in picked], data.labels[picked]
    out = {"rows": rows, "batch": BATCH}
    with tempfile.TemporaryDirectory() as directory:
        path = distilbert_sized(tokenizer_from, directory, **dict(scale.shrink))
        started = time.perf_counter()
        encodings = tokenize(path, texts, MAX_LENGTH)
        out["tokenize_s"] = time.perf_counter() - started
        model = load_classifier(path, N_CLASSES, 0)
        blocks = len(encoder_parts(model)[2])
        started = time.perf_counter()
        states = frozen_prefix(model, encodings, np.arange(rows), [blocks], device)[blocks]  # (N, 1, H)
        out["prefix_pass_s"] = time.perf_counter() - started
        order = rng.permutation(rows)  # the grid's split: 5% validation, 10% test, the rest trains
        val, train = order[:int(MLU_VAL * rows)], order[int((MLU_VAL + MLU_TEST) * rows):]
        head = top_of(load_classifier(path, N_CLASSES, 0), blocks)  # the head alone: nothing else is left
        seconds, out["head_max_memory_gib"] = epoch_seconds(head, Inputs(encodings, states, device), labels, train, val)
        out |= {"head_train_rows": len(train), "head_epoch_s": seconds, "head_epoch_s_per_row": seconds / len(train),
                "head_cell_s": HEAD_EPOCHS * seconds}  # one classifier-only run of the grid at data size all
        part = train[:sample]  # full fine-tuning on a sample of it: its time per row scales
        seconds, out["full_max_memory_gib"] = epoch_seconds(load_classifier(path, N_CLASSES, 0),
                                                            Inputs(encodings, None, device, full), labels, part,
                                                            val[:256])
        out |= {"full_train_rows": len(part), "full_epoch_s_per_row": seconds / len(part)}
        hidden = model.config.dim
    out["prefix_states_gib_per_depth"] = rows * MAX_LENGTH * hidden * 4 / 2 ** 30  # float32 (N, T, H)
    return out | extrapolate(out)


def extrapolate(measured: dict) -> dict:
    """EXTRAPOLATED, not measured: the whole grid's training time at batch 32 as an upper bound.

    Every run trains its full epoch budget (no early stopping, no pruning); a run's time is
    epochs x training rows x seconds per row-epoch, the last interpolated linearly in the
    trainable blocks between the classifier-only and the full fine-tuning cell (a top on
    cached states does less than the full model per block: this overstates the middle).
    """
    train_all = MLU_ROWS * (1 - MLU_VAL - MLU_TEST)
    total = 0.0
    for size in MLU_SIZES:
        n = train_all if size == "all" else size
        for epochs in MLU_EPOCHS:
            for freeze in MLU_FREEZE:
                trainable = 0 if freeze == "all" else MLU_BLOCKS - freeze
                per_row = measured["head_epoch_s_per_row"] + trainable / MLU_BLOCKS * (
                    measured["full_epoch_s_per_row"] - measured["head_epoch_s_per_row"])
                total += MLU_RUNS * epochs * n * per_row
    cells = len(MLU_SIZES) * len(MLU_EPOCHS) * len(MLU_FREEZE)
    return {"extrapolated_grid": {"cells": cells, "runs": cells * MLU_RUNS, "gpu_hours_upper_bound": total / 3600,
                                  "basis": extrapolate.__doc__.split("\n\n")[1].replace("\n    ", " ").strip()}}
