"""``harness export``: one stored evaluation run's model as a transformers directory.

Runs keep no weights, so the run is trained again from its record (same seed, training subset,
learning rate, batch size, epoch budget and early stopping, so the same restored epoch) by the
execution core. On the CPU that is bit for bit the stored run (tests/test_determinism.py); the
export is refused when the retrained test predictions differ from the stored ones (a GPU run). A
frozen-prefix cell trains its top from cached states; the directory holds the whole model. The
model card is the caller's (``card``: the report's numbers; the run layer never imports the report).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from harness.data import load_dataset
from harness.errors import HarnessError
from harness.kept import kept
from harness.records import RunRecord, decode_classes
from harness.run.display import Display
from harness.run.execute import load_context, train_one
from harness.run.modeling import load_tokenizer
from harness.run.predict import classify
from harness.store import Results
from harness.study import expand


@dataclass(frozen=True)
class Exported:
    directory: Path
    record: RunRecord  # the stored run
    retrained: RunRecord  # the run trained again, whose weights are in the directory
    facts: dict  # what the model card says of the export itself


def evaluation_record(results: Results, cell: str, seed: int, replicate: int = 0) -> RunRecord:
    """The stored evaluation run of ``cell`` and ``seed`` (of search ``replicate``); it must be one that counts."""
    runs = {r.seed: r for r in results.records() if r.role == "eval" and r.cell == cell and r.replicate == replicate}
    if not runs:
        raise HarnessError(f"--cell {cell}: {results.dir} has no evaluation run of this cell")
    if seed not in runs:
        raise HarnessError(f"--seed {seed}: cell {cell} has no evaluation run of seed {seed} "
                           f"(its seeds: {', '.join(map(str, sorted(runs)))})")
    if not kept(runs[seed]):
        good = sorted(s for s, r in runs.items() if kept(r))
        raise HarnessError(f"--seed {seed}: that run of cell {cell} ended {runs[seed].status} and counts in no "
                           f"estimate; choose a kept seed ({', '.join(map(str, good)) or 'none'})")
    return runs[seed]


def first_kept_seed(results: Results, cell: str, replicate: int = 0) -> int:
    """The cell's lowest evaluation seed (of search ``replicate``) whose run counts."""
    seeds = sorted(r.seed for r in results.records() if r.role == "eval" and r.cell == cell and kept(r)
                   and r.replicate == replicate)
    if not seeds:
        raise HarnessError(f"--cell {cell}: no evaluation run of this cell counts (each failed, diverged or "
                           "collapsed); choose another cell")
    return seeds[0]


def check_out(out: Path) -> None:
    """Refuse a directory that holds anything, before any training."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HarnessError(f"--out {out}: exists and is not an empty directory; give a new one")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise HarnessError(f"--out {out}: {probe} is a file, so no directory can be made under it")


def export(results: Results, cell_id: str, seed: int, out: Path, card: Callable[[dict], str],
           display: Display | None = None, replicate: int = 0) -> Exported:
    """Train the stored run again, check it, and write the directory: config, weights, tokenizer, card.

    Nothing is written unless the retrained run's test predictions equal the stored ones.
    """
    display = display or Display(enabled=False)
    check_out(out)
    record = evaluation_record(results, cell_id, seed, replicate)
    study = results.study()
    cells = {c.id: c for c in expand(study)}
    if cell_id not in cells:
        raise HarnessError(f"--cell {cell_id}: not a cell of study '{study.name}' as its manifest now reads")
    dataset = load_dataset(study.data)
    results.check_owner(study, dataset.source)  # the data changed since the run: refused here
    results.check_splits(dataset.splits())
    threads = _threads(record.device)
    previous = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)  # as the run had them
        ctx = load_context(study, list(cells.values()), dataset, display)
        if record.device.startswith("cpu"):
            ctx.device = torch.device("cpu")
        display.start_run(f"{cell_id} seed {seed} again", cells[cell_id].epochs)
        again, model = train_one(ctx, cells[cell_id], seed, record.params, role="eval", replicate=record.replicate)
    finally:
        torch.set_num_threads(previous)
    _check_same(results, record, again)
    model.config.id2label = dict(enumerate(dataset.class_names))
    model.config.label2id = {name: i for i, name in enumerate(dataset.class_names)}
    texts = [dataset.texts[r] for r in dataset.test] if len(dataset.test) else \
        [dataset.texts[r] for r in dataset.val]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    staging.chmod(0o777 & ~mask)  # as a plain mkdir would make it
    try:
        model.to("cpu").save_pretrained(staging, safe_serialization=True)
        spec = cells[cell_id].study.model  # a grid may vary the model or its max_length
        tokenizer = load_tokenizer(spec.name)
        tokenizer.model_max_length = spec.max_length  # truncation=True cuts where training did
        tokenizer.save_pretrained(staging)
        facts = _facts(record, again, staging, texts, dataset.class_names, threads)
        (staging / "README.md").write_text(card(facts))
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Exported(out, record, again, facts)


def _threads(device: str) -> int:
    """The CPU threads a stored run trained with ("cpu (2 threads)"); 0 when not said."""
    found = re.match(r"cpu \((\d+) threads?\)", device or "")
    return int(found.group(1)) if found else 0


def _predictions(record: RunRecord) -> tuple[str, str, list | None]:
    """(split, predicted classes, probabilities) a run is judged by: the test set, else validation at
    its restored epoch."""
    if record.test.get("pred"):
        return "test", record.test["pred"], record.test.get("probs") or record.test.get("prob")
    return "validation", record.restored.get("val_pred", ""), None


def _check_same(results: Results, stored: RunRecord, again: RunRecord) -> None:
    """Refuse (one line) a retrained run whose predictions differ from the stored run's."""
    if again.status not in ("ok", "collapsed"):
        raise HarnessError(f"{results.dir}: training {stored.cell} seed {stored.seed} again ended {again.status} "
                           f"({(again.error or '').splitlines()[0][:200] if again.error else 'no error'}); "
                           "nothing written")
    split, theirs, their_probs = _predictions(stored)
    _, ours, our_probs = _predictions(again)
    a, b = decode_classes(theirs), decode_classes(ours)
    if len(a) != len(b) or (a != b).any() or their_probs != our_probs:
        differ = int((a != b).sum()) if len(a) == len(b) else max(len(a), len(b))
        if not stored.device.startswith("cpu"):
            why = (f"the run was trained on {stored.device}, and a GPU run is not reproduced bit for bit (bf16 "
                   "autocast, non-deterministic kernels): only CPU runs retrain bit for bit")
        elif stored.device != again.device:
            why = f"the run was trained on {stored.device}, retrained on {again.device}"
        else:
            why = f"both on {stored.device}: the data, the model files or the harness changed since the run"
        raise HarnessError(f"{results.dir}: {stored.cell} seed {stored.seed} trained again predicts {split} examples "
                           f"differently from the stored run ({differ} of {len(a)} predictions"
                           f"{'' if differ else ', and the probabilities'} differ; {why}); nothing written")


def _facts(stored: RunRecord, again: RunRecord, directory: Path, texts: list[str], class_names: list[str],
           threads: int) -> dict:
    """What the card says of the export: how it was made, and how the saved model reads the stored texts."""
    split, pred, _ = _predictions(stored)
    frame = classify(directory, texts)
    labels = np.array([class_names.index(x) for x in frame["label"]])
    stored_pred = decode_classes(pred)
    probs = frame[[f"prob_{c}" for c in class_names]].to_numpy()
    stored_probs = np.asarray(stored.test.get("probs") or [], dtype=float)
    if not stored_probs.size and stored.test.get("prob"):
        p = np.asarray(stored.test["prob"], dtype=float)
        stored_probs = np.stack([1 - p, p], axis=1)
    return {"cell": stored.cell, "seed": stored.seed, "params": dict(stored.params), "split": split,
            "n": len(stored_pred), "agree": int((labels == stored_pred).sum()),
            "max_prob_difference": float(np.abs(probs - stored_probs).max()) if stored_probs.shape == probs.shape
            else None, "stored_device": stored.device, "device": again.device, "threads": threads,
            "best_epoch": again.best_epoch, "stopped_epoch": again.stopped_epoch, "freeze_depth": again.freeze_depth,
            "trainable_params": again.trainable_params, "total_params": again.total_params,
            "seconds": again.seconds}


__all__ = ["Exported", "check_out", "evaluation_record", "export", "first_kept_seed"]
