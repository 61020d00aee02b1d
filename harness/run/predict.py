"""``harness predict``: an exported model directory classifies texts: each text's label and the
probability of every class, through transformers' own text-classification pipeline.

Texts are cut at the tokens the model trained on (the tokenizer's ``model_max_length``, set by
export) and read one at a time, so no padding changes a probability, with one CPU thread: a single
short text is too small to share (measured on 2 busy cores: 14 ms a sentence with one thread, 170 ms
with two).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from harness.data.sources import read_table
from harness.errors import HarnessError


def pipeline(directory: str | Path):
    """transformers' text-classification pipeline of an exported directory, on the CPU, offline."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise HarnessError(f"{directory}: no config.json; expected a directory written by harness export")
    from transformers import pipeline as make
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" on every load
    try:
        return make("text-classification", model=str(directory), device="cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{directory}: cannot be loaded as a text classifier "
                           f"({str(exc).splitlines()[0][:200]})") from None


def classify(directory: str | Path, texts: list[str]) -> pd.DataFrame:
    """One row per text: the text, its predicted label and ``prob_<label>`` for every class."""
    classifier = pipeline(directory)
    names = [classifier.model.config.id2label[i] for i in range(classifier.model.config.num_labels)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scored = classifier(list(texts), truncation=True, top_k=None, batch_size=1) if texts else []
    finally:
        torch.set_num_threads(threads)
    rows = []
    for text, scores in zip(texts, scored):
        probs = {s["label"]: s["score"] for s in scores}
        rows.append({"text": text, "label": max(names, key=lambda n: probs[n]),
                     **{f"prob_{n}": probs[n] for n in names}})
    return pd.DataFrame(rows, columns=["text", "label", *[f"prob_{n}" for n in names]])


def read_texts(path: str | Path, column: str) -> list[str]:
    """The texts of ``column`` in a .csv, .tsv, .parquet or .jsonl file; an empty one is refused."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"--csv {path}: no such file")
    frame = read_table(path)
    if column not in frame.columns:
        raise HarnessError(f"{path}: --column '{column}' is not a column (columns: {', '.join(map(str, frame.columns))})")
    texts = frame[column]
    empty = texts.isna() | (texts.astype(str).str.strip() == "")
    if empty.any():
        rows = ", ".join(str(i) for i in texts.index[empty][:5])
        raise HarnessError(f"{path}: column '{column}' has {int(empty.sum())} empty values (rows {rows}"
                           f"{', ...' if empty.sum() > 5 else ''}); expected a text in every row")
    return texts.astype(str).tolist()


__all__ = ["classify", "pipeline", "read_texts"]
