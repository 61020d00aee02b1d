"""How a batch's sequences are laid out for the model: padded, bucketed or packed.

A batch of B texts of lengths l_1..l_B reaches the model in one of three layouts:

- padded: (B, T) with T the longest text of the batch, and a mask over the padding;
- bucketed: (B, W) with W the smallest of a few fixed widths >= T, so that a graph
  compiled for fixed shapes (``torch.compile(dynamic=False)``) is reused batch after batch;
- packed: (1, l_1 + ... + l_B), the texts end to end with no padding at all. Each text
  keeps its own positions, attention stays inside each text (``cu_seqlens``, flash
  attention's variable-length convention: text b holds flat tokens cu[b]:cu[b+1]), and
  the classification head reads each text's first token.

The packed layout computes the same function as the padded one, to rounding: the model
is the family's own code; only the attention call and where the head looks are swapped
(``attach``). On CUDA the attention runs flash attention's variable-length kernel
(``torch.ops.aten._flash_attention_forward`` on cu_seqlens, the op under
``torch.nn.attention.varlen.varlen_attn``; called directly because it takes the
attention dropout these models train with, which ``varlen_attn`` fixes at 0). The
"masked" kernel computes the same thing with SDPA and a block-diagonal mask: O(T^2)
work in the packed length, for checking the bookkeeping on the CPU, not for speed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError

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
    from harness.modeling import encoder_parts

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
    from harness.modeling import encoder_parts

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
    from harness.modeling import encoder_parts

    # a graph per width, per train/eval mode, with and without a mask: more than the default 8
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
    for block in encoder_parts(model)[2]:
        block.compile(dynamic=dynamic)
    return model
