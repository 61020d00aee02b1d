"""The peer: Hugging Face ``Trainer`` with ``hyperparameter_search(backend="optuna")``.

Written the way the Trainer documentation shows it, not hobbled: ``model_init``
builds a fresh model per trial and freezes with ``requires_grad_(False)``;
``DataCollatorWithPadding``; evaluation and saving every epoch, the best epoch
restored at the end; ``EarlyStoppingCallback(early_stopping_patience=3)``; the
search over a log-uniform learning rate and a batch-size choice, maximising
validation accuracy; after the search, each seed trains with the best
parameters (``setattr(trainer.args, name, value)``, as the docs do) and
predicts the test set. Two documented options only make it faster:
``save_only_model=True`` (no optimizer state in each checkpoint) and
``save_total_limit=1``.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                          EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments)
from transformers.utils import logging as hf_logging

from bench.cells import N_CLASSES, BenchData, Cell, SideResult
from bench.ours import open_search
from harness.run.modeling import encoder_parts, model_path

hf_logging.set_verbosity_error()


def model_init_for(path: str, cell: Cell):
    """``model_init``: a fresh pretrained classifier, embeddings and lowest blocks frozen."""

    def model_init(trial=None) -> torch.nn.Module:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=N_CLASSES)
        base, _, blocks = encoder_parts(model)  # the same modules the harness freezes
        depth = cell.depth(len(blocks))
        if depth > 0:
            base.embeddings.requires_grad_(False)
            for block in blocks[:depth]:
                block.requires_grad_(False)
        return model

    return model_init


class EpochCount(TrainerCallback):
    """Records how many epochs each training ran (early stopping ends some sooner)."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_end(self, args, state, control, **kwargs):
        self.epochs.append(round(state.epoch or 0))


def hp_space_for(cell: Cell):
    def hp_space(trial) -> dict:
        return {"learning_rate": trial.suggest_float("learning_rate", *cell.lr, log=True),
                "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size",
                                                                         list(cell.batch_sizes))}

    return hp_space


def compute_metrics(eval_pred) -> dict:
    logits, labels = eval_pred
    return {"accuracy": float(np.mean(np.argmax(logits, axis=-1) == labels))}


def encode(tokenizer, data: BenchData, rows: np.ndarray, max_length: int) -> list[dict]:
    """A list of feature dicts, as ``dataset.map(tokenize)`` would give (a list is a valid Dataset)."""
    features = tokenizer([data.texts[i] for i in rows], truncation=True, max_length=max_length)
    return [{**{k: v[j] for k, v in features.items()}, "labels": int(data.labels[r])} for j, r in enumerate(rows)]


def arguments(out_dir: str, cell: Cell, seed: int, device: torch.device) -> TrainingArguments:
    return TrainingArguments(
        output_dir=out_dir, num_train_epochs=cell.epochs, seed=seed,
        eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="accuracy", save_total_limit=1, save_only_model=True,
        per_device_eval_batch_size=64, report_to="none", disable_tqdm=True,
        bf16=device.type == "cuda", use_cpu=device.type == "cpu")


def run_peer(cell: Cell, data: BenchData, model: str, device: torch.device) -> SideResult:
    path = model_path(model)
    with tempfile.TemporaryDirectory() as out_dir:
        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(path)
        collator = DataCollatorWithPadding(tokenizer)
        first = data.seed_split(cell.data_size, 0)
        counter = EpochCount()
        trainer = Trainer(model_init=model_init_for(path, cell), args=arguments(out_dir, cell, 0, device),
                          train_dataset=encode(tokenizer, data, first.train, cell.max_length),
                          eval_dataset=encode(tokenizer, data, first.val, cell.max_length),
                          data_collator=collator, compute_metrics=compute_metrics,
                          callbacks=[EarlyStoppingCallback(early_stopping_patience=3), counter])
        search = open_search(cell)  # the harness side's sampler and pruner, fresh
        best = trainer.hyperparameter_search(
            hp_space=hp_space_for(cell), compute_objective=lambda metrics: metrics["eval_accuracy"],
            n_trials=cell.trials, direction="maximize", backend="optuna",
            sampler=search.sampler, pruner=search.pruner)
        test = encode(tokenizer, data, data.test, cell.max_length)
        accuracies = []
        for seed in range(cell.seeds):
            split = data.seed_split(cell.data_size, seed)
            trainer = Trainer(model_init=model_init_for(path, cell), args=arguments(out_dir, cell, seed, device),
                              train_dataset=encode(tokenizer, data, split.train, cell.max_length),
                              eval_dataset=encode(tokenizer, data, split.val, cell.max_length),
                              data_collator=collator, compute_metrics=compute_metrics,
                              callbacks=[EarlyStoppingCallback(early_stopping_patience=3), counter])
            for name, value in best.hyperparameters.items():
                setattr(trainer.args, name, value)
            trainer.train()
            accuracies.append(trainer.predict(test).metrics["test_accuracy"])
        params = {"lr": best.hyperparameters["learning_rate"],
                  "batch_size": best.hyperparameters["per_device_train_batch_size"]}
        return SideResult(time.perf_counter() - started, accuracies, params, counter.epochs)
