"""How a batch's sequences reach the model: padded, bucketed or packed (``Inputs``, ``Layout``).

- padded: (B, T), T the batch's longest text, with a mask over the padding (the default);
- bucketed: (B, W), W the smallest of a few fixed widths >= T, so a compiled graph is reused;
- packed: (1, l_1 + ... + l_B), the texts end to end, attention kept inside each text by
  ``cu_seqlens`` (flash attention's variable-length kernel on CUDA; a masked SDPA stand-in on
  the CPU, for checking the bookkeeping) and the head reading each text's first token.
The packed layout computes the padded one's function to rounding (tests/test_packing.py).
Details: docs/methods.md, "Batch layouts".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.run.modeling import Encodings, pad

KINDS = ("padded", "bucketed", "packed")
KERNELS = ("auto", "flash", "masked")
MASKED_MAX, CHUNK = 8192, 2048  # the masked kernel: most tokens it trains on, queries at a time


@dataclass(frozen=True)
class Layout:
    """``kind``: padded | bucketed | packed. ``widths``: the bucket widths in tokens (bucketed).
    ``attention``: the packed layout's kernel: flash, masked, or auto (flash where it runs,
    otherwise the batch is padded instead and ``Inputs.path`` says so)."""

    kind: str = "padded"
    widths: tuple[int, ...] = ()
    attention: str = "auto"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HarnessError(f"layout '{self.kind}': expected one of {', '.join(KINDS)}")
        if self.attention not in KERNELS:
            raise HarnessError(f"packed attention '{self.attention}': expected one of {', '.join(KERNELS)}")
        if self.kind == "bucketed" and (not self.widths or list(self.widths) != sorted(set(self.widths))
                                        or self.widths[0] < 1):
            raise HarnessError(f"bucket widths {list(self.widths)}: expected positive, increasing token counts")


def bucket_width(longest: int, widths: tuple[int, ...]) -> int:
    """The smallest width that holds ``longest`` tokens; past the last width, ``longest`` itself."""
    i = int(np.searchsorted(widths, longest))
    return widths[i] if i < len(widths) else longest


def pack(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sequences of ``lengths`` laid end to end: (cu_seqlens (B+1,) int32, the sequence of
    each flat token (T,), the position of each flat token inside its sequence (T,))."""
    cu = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=cu[1:])
    seq = np.repeat(np.arange(len(lengths)), lengths)
    return cu, seq, np.arange(cu[-1]) - cu[:-1][seq]


# --- attention on cu_seqlens -------------------------------------------------------------------

def flash_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu: torch.Tensor,
                 longest: int, dropout: float, scale: float | None) -> torch.Tensor:
    """(T, H, D) -> (T, H, D) through flash attention's variable-length kernel (CUDA, bf16/fp16).

    ``longest`` only sizes the kernel's grid: any bound >= the longest sequence is exact, and
    a fixed one keeps a compiled graph from specialising on each batch's maximum.
    """
    return torch.ops.aten._flash_attention_forward(query, key, value, cu, cu, longest, longest, dropout,
                                                   False, False, scale=scale)[0]


def masked_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu: torch.Tensor,
                  dropout: float, scale: float | None) -> torch.Tensor:
    """The same function as ``flash_varlen`` by SDPA with a block-diagonal mask (any device).

    Queries go in chunks of ``CHUNK``, so that a chunk's mask and scores are (CHUNK, T): without
    gradients memory stays linear in T; with them autograd keeps every chunk's scores, T^2 in
    all, hence the limit ``MASKED_MAX`` on a training batch.
    """
    total = query.shape[0]
    if total > MASKED_MAX and torch.is_grad_enabled():
        raise HarnessError(f"packed training batch of {total} tokens: the masked kernel, a check of the packing, "
                           f"takes at most {MASKED_MAX}; use smaller batches or the flash kernel (CUDA)")
    seq = torch.searchsorted(cu[1:], torch.arange(total, device=query.device, dtype=cu.dtype), right=True)  # (T,)
    k, v = key.transpose(0, 1), value.transpose(0, 1)  # (H, T, D)
    out = [F.scaled_dot_product_attention(query[i:i + CHUNK].transpose(0, 1), k, v, scale=scale, dropout_p=dropout,
                                          attn_mask=seq[i:i + CHUNK, None] == seq[None, :])  # attend inside one's text
           for i in range(0, total, CHUNK)]
    return torch.cat(out, dim=1).transpose(0, 1)


def packed_attention(kernel: str, module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float | None = None,
                     dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query, key, value (1, H, T, D) -> (1, T, H, D)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:  # not a packed batch: the model's usual SDPA path
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, H, D), a view of the projection
    if kernel == "flash":
        out = flash_varlen(q, k, v, cu, kwargs["max_length_q"], dropout, scaling)
    else:
        out = masked_varlen(q, k, v, cu, dropout, scaling)
    return out[None], None


def attention_name(kernel: str) -> str:
    # not "..._flash": transformers takes any name holding "flash" for a flash-attn package and imports it
    return f"harness_packed_{'varlen' if kernel == 'flash' else kernel}"


@functools.cache
def register(kernel: str) -> str:
    """Register the packed attention with transformers under its own name (once per process)."""
    from transformers import AttentionInterface

    AttentionInterface.register(attention_name(kernel), functools.partial(packed_attention, kernel))
    return attention_name(kernel)


def choose_kernel(layout: Layout, device: torch.device) -> tuple[str | None, str]:
    """(the packed attention that runs, or None: the batch is padded or bucketed; the path, in words)."""
    if layout.kind != "packed":
        return None, layout.kind if layout.kind == "padded" else f"bucketed {list(layout.widths)}"
    if layout.attention == "masked":
        return "masked", "packed (block-diagonal masked SDPA)"
    problem = flash_problem(device)
    if problem is None:
        return "flash", "packed (flash varlen)"
    if layout.attention == "flash":
        raise HarnessError(f"packed layout with flash attention on {device}: {problem}")
    return None, f"padded (packed asked; {problem})"


# --- the model side ----------------------------------------------------------------------------

def attach(model: nn.Module, kernel: str) -> None:
    """Make ``model`` take packed batches: the packed attention, and a hook that hands the
    head each sequence's first token, (1, T, H) -> (B, 1, H), so that the family's own head
    code (which reads position 0) runs unchanged. Padded batches with a 4D mask still work."""
    from harness.run.modeling import encoder_parts

    if getattr(model, "_harness_packed", None) == kernel:
        return
    model.set_attn_implementation(register(kernel))
    _, holder, _ = encoder_parts(model)
    if getattr(model, "_harness_packed", None) is None:
        holder.register_forward_hook(first_tokens, with_kwargs=True)
    model._harness_packed = kernel


def first_tokens(module: nn.Module, args: tuple, kwargs: dict, output):
    """Forward hook on the encoder: keep only each packed sequence's first token."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        return output
    output.last_hidden_state = output.last_hidden_state[0, cu[:-1].long()].unsqueeze(1)  # (B, 1, H)
    return output


def position_offset(model: nn.Module) -> int:
    """RoBERTa numbers positions from padding_idx + 1 (its embeddings hold ``padding_idx``); BERT
    and DistilBERT from 0."""
    from harness.run.modeling import encoder_parts

    index = getattr(encoder_parts(model)[0].embeddings, "padding_idx", None)
    return 0 if index is None else index + 1


@functools.cache
def _flash_problem(device: str) -> str | None:
    if not device.startswith("cuda"):
        return "flash attention needs a CUDA device"
    try:
        q = torch.randn(5, 2, 64, device=device, dtype=torch.bfloat16, requires_grad=True)
        cu = torch.tensor([0, 2, 5], device=device, dtype=torch.int32)
        flash_varlen(q, q, q, cu, 4, 0.1, None).float().sum().backward()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: not here, pad instead
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def flash_problem(device: torch.device) -> str | None:
    """Why the flash variable-length kernel cannot train here (forward and backward, bf16), or None."""
    return _flash_problem(str(device))


def varlen_api() -> bool:
    """Whether this torch has the public ``torch.nn.attention.varlen.varlen_attn`` (torch >= 2.10)."""
    try:
        import torch.nn.attention.varlen as varlen  # does this torch have it?
    except ImportError:
        return False
    return hasattr(varlen, "varlen_attn")


# --- compiled blocks ---------------------------------------------------------------------------

def compile_blocks(model: nn.Module, dynamic: bool | None) -> nn.Module:
    """Compile each encoder block in place (regional compilation): one block's graph serves all
    of them, so compiling costs one block, not the model. ``dynamic=False`` for bucketed
    batches (a graph per width); None for packed or padded ones (static at first, then the
    dimensions seen to change are made symbolic)."""
    from harness.run.modeling import encoder_parts

    # a graph per width, per train/eval mode, with and without a mask: more than the default 8
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
    for block in encoder_parts(model)[2]:
        block.compile(dynamic=dynamic)
    return model


class Inputs:
    """Model inputs for a batch of rows: token ids, or cached frozen-prefix states.

    ``layout`` (harness.run.packing) lays each batch out padded to its longest row (the default),
    bucketed to a few fixed widths, or packed end to end without padding; ``path`` names the
    layout that runs here (packed falls back to padded where its attention kernel is missing).
    A packed layout needs the model readied by ``attach``, which ``train_run`` and ``predict`` do.
    """

    def __init__(self, encodings: Encodings, states: torch.Tensor | None, device: torch.device,
                 layout: Layout = Layout(), rows: np.ndarray | None = None) -> None:
        self.encodings = encodings
        self.device = device
        self.states = None if states is None else states.to(device)
        # ``rows``: the rows held here, in order (the states' first dimension; None: every row). A
        # batch's rows are looked up through ``slot``, so that nothing is held for rows no run touches.
        self.slot = None
        if rows is not None:
            self.slot = np.full(len(encodings.ids), -1, dtype=np.int64)
            self.slot[np.asarray(rows)] = np.arange(len(rows))
        held = np.arange(len(encodings.ids)) if rows is None else np.asarray(rows)
        # every text padded once, (N, T_max) int32 on the host: a batch is then one indexing
        # operation, not a Python loop over its rows while the device waits for its next step
        self.ids = pad(encodings, held)[0].int() if states is None else None
        self.width = (self.ids if states is None else self.states).shape[1]  # no batch is wider
        self.layout = layout
        self.kernel, self.path = choose_kernel(layout, device)
        self.position_offset = 0  # of the first token's position id, set by attach

    def attach(self, model: nn.Module) -> None:
        """Ready ``model`` for this layout's batches (only packed ones need it); repeatable."""
        if self.kernel is not None:
            attach(model, self.kernel)
            self.position_offset = position_offset(model)

    def held(self, rows: np.ndarray) -> np.ndarray:
        """Where ``rows`` are in the held arrays (the rows themselves when every row is held)."""
        if self.slot is None:
            return np.asarray(rows)
        at = self.slot[rows]
        if (at < 0).any():
            raise ValueError(f"rows {np.asarray(rows)[at < 0][:5].tolist()} were not encoded for this run")
        return at

    def __call__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        if self.kernel is not None:
            return self.packed(rows)
        lengths = self.encodings.lengths[rows]
        width = int(lengths.max())
        if self.layout.kind == "bucketed":  # a few fixed widths: a compiled graph is reused
            width = min(bucket_width(width, self.layout.widths), self.width)
        at = self.held(rows)
        if self.states is None:
            ids = self.ids[torch.from_numpy(np.asarray(at, dtype=np.int64)), :width].long()
            out = {"input_ids": ids.to(self.device, non_blocking=True)}
        else:
            out = {"inputs_embeds": self.states[to_device(at, self.device), :width]}
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
        the cu_seqlens that keep attention inside it (harness.run.packing.pack)."""
        cu, seq, pos = pack(np.minimum(self.encodings.lengths[rows], self.width))
        flat = np.asarray(self.held(rows), dtype=np.int64)[seq]  # (T,) where each token's row is held
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
