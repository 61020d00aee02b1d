"""Packed and bucketed batches compute what padded ones do: same logits, same gradients, same runs.

On the CPU the packed layout runs its block-diagonal masked attention (flash attention's
variable-length kernel needs CUDA: tests/test_gpu.py checks that one); everything else,
the packing bookkeeping, the positions, the first-token hook, is the code the GPU runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from harness.run import packing
from harness.errors import HarnessError
from harness.run.modeling import Encodings, encoder_parts, freeze_, frozen_prefix, top_of
from harness.run.packing import Layout, bucket_width, pack
from harness.study import TrainSpec
from harness.run.packing import Inputs
from harness.run.train import predict, train_run
from tiny import FAMILIES, tiny_model

CPU = torch.device("cpu")
PACKED = Layout("packed", attention="masked")
BUCKETED = Layout("bucketed", widths=(4, 8, 16))
NO_DROPOUT = {"bert": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
              "roberta": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
              "distilbert": dict(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)}


def configured(family: str, **overrides) -> torch.nn.Module:
    """A tiny model of ``family`` with some of its config changed (seed 0)."""
    config = FAMILIES[family]()
    for key, value in overrides.items():
        setattr(config, key, value)
    config.num_labels = 2
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")


def encodings(lengths: list[int], seed: int = 0) -> Encodings:
    rng = np.random.default_rng(seed)
    ids = [np.array([0, *rng.integers(3, 60, size=n - 2), 2], dtype=np.int32) for n in lengths]
    return Encodings(ids, np.array(lengths), pad_id=1)


@pytest.mark.parametrize("lengths, cu, seq, pos", [
    ([3, 1, 4], [0, 3, 4, 8], [0, 0, 0, 1, 2, 2, 2, 2], [0, 1, 2, 0, 0, 1, 2, 3]),
    ([2], [0, 2], [0, 0], [0, 1]),
    ([1, 1], [0, 1, 2], [0, 1], [0, 0]),
])
def test_pack_lays_sequences_end_to_end(lengths, cu, seq, pos):
    got = pack(np.array(lengths))
    assert [g.tolist() for g in got] == [cu, seq, pos]
    assert got[0].dtype == np.int32  # flash attention's cu_seqlens type


@pytest.mark.parametrize("longest, width", [(1, 4), (4, 4), (5, 8), (16, 16), (17, 17)])
def test_bucket_width_is_the_smallest_that_holds_the_batch(longest, width):
    assert bucket_width(longest, (4, 8, 16)) == width


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="flat"), "layout 'flat'"), (dict(kind="packed", attention="cuda"), "packed attention 'cuda'"),
    (dict(kind="bucketed"), "bucket widths"), (dict(kind="bucketed", widths=(64, 32)), "bucket widths"),
    (dict(kind="bucketed", widths=(0, 32)), "bucket widths"),
])
def test_a_bad_layout_fails_naming_the_value(kwargs, message):
    with pytest.raises(HarnessError, match=message):
        Layout(**kwargs)


@pytest.mark.parametrize("family, offset", [("bert", 0), ("distilbert", 0), ("roberta", 2)])
def test_a_packed_batch_holds_each_row_once_with_its_own_positions(family, offset):
    enc = encodings([5, 3, 7, 4])
    inputs = Inputs(enc, None, CPU, PACKED)
    inputs.attach(tiny_model(family))
    got = inputs(np.array([2, 0, 3]))
    assert got["input_ids"].tolist() == [np.concatenate([enc.ids[2], enc.ids[0], enc.ids[3]]).tolist()]
    assert got["position_ids"].tolist() == [[offset + p for p in [*range(7), *range(5), *range(4)]]]
    assert got["cu_seq_lens_q"].tolist() == [0, 7, 12, 16] and got["max_length_q"] == 7
    assert "attention_mask" not in got  # no padding, nothing to mask


def logits_and_grads(model, inputs: Inputs, rows: np.ndarray, y: torch.Tensor):
    inputs.attach(model)
    model.eval()  # dropout off: the layouts draw their dropout masks differently
    logits = model(**inputs(rows)).logits
    F.cross_entropy(logits, y).backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_and_bucketed_batches_give_the_logits_and_gradients_of_padded_ones(family):
    enc = encodings([4, 12, 7, 12, 3, 9])
    rows, y = np.array([1, 4, 0, 5, 2]), torch.tensor([0, 1, 1, 0, 1])
    expected, expected_grads = logits_and_grads(tiny_model(family), Inputs(enc, None, CPU), rows, y)
    for layout in (PACKED, BUCKETED):
        got, grads = logits_and_grads(tiny_model(family), Inputs(enc, None, CPU, layout), rows, y)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        assert grads.keys() == expected_grads.keys() and len(grads) > 20
        for name in grads:
            torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_packed_top_on_cached_states_predicts_as_a_padded_one(family):
    enc = encodings([6, 11, 3, 9, 14, 5])
    rows = np.arange(6)
    states = frozen_prefix(tiny_model(family), enc, rows, [2], CPU)[2]
    model = tiny_model(family)
    freeze_(model, 2)
    top = top_of(model, 2)
    expected = predict(top, Inputs(enc, states, CPU), rows)
    torch.testing.assert_close(predict(top, Inputs(enc, states, CPU, PACKED), rows), expected,
                               rtol=1e-5, atol=1e-6)


def test_a_packed_training_run_repeats_the_padded_one(family="distilbert"):
    """Without dropout (its masks are drawn per token) the whole loop agrees, epoch by epoch."""
    rng = np.random.default_rng(1)
    enc = encodings(list(rng.integers(3, 16, size=40)))
    labels = np.array([int(x[1] % 2) for x in enc.ids])
    kwargs = dict(lr=2e-3, batch_size=8, epochs=2, seed=0, spec=TrainSpec(patience=5))
    runs = []
    for layout in (Layout(), PACKED):
        model = configured(family, **NO_DROPOUT[family])
        runs.append(train_run(model, Inputs(enc, None, CPU, layout), labels, np.arange(24), np.arange(24, 32),
                              np.arange(32, 40), **kwargs))
    for padded, packed in zip(runs[0].history, runs[1].history):
        assert packed["val_correct"] == padded["val_correct"]
        assert packed["train_loss"] == pytest.approx(padded["train_loss"], rel=1e-5)
        assert packed["val_loss"] == pytest.approx(padded["val_loss"], rel=1e-5)
    assert runs[1].test["pred"] == runs[0].test["pred"]


def test_packed_without_its_kernel_pads_and_says_why():
    enc = encodings([5, 3, 7])
    inputs = Inputs(enc, None, CPU, Layout("packed"))
    assert inputs.path == "padded (packed asked; flash attention needs a CUDA device)"
    model = tiny_model("bert")
    inputs.attach(model)
    assert model.config._attn_implementation == "sdpa"  # left alone
    assert set(inputs(np.array([0, 1]))) == {"input_ids", "attention_mask"}
    with pytest.raises(HarnessError, match="flash attention needs a CUDA device"):
        Inputs(enc, None, CPU, Layout("packed", attention="flash"))


def test_attaching_twice_adds_one_hook_and_a_padded_batch_still_works():
    enc = encodings([5, 3, 7])
    model = tiny_model("distilbert").eval()
    packed = Inputs(enc, None, CPU, PACKED)
    packed.attach(model)
    packed.attach(model)
    assert len(encoder_parts(model)[1]._forward_hooks) == 1
    expected = predict(tiny_model("distilbert"), Inputs(enc, None, CPU), np.arange(3))
    torch.testing.assert_close(predict(model, Inputs(enc, None, CPU), np.arange(3)), expected)  # 4D mask path
    torch.testing.assert_close(predict(model, packed, np.arange(3)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [3, 7, 100])
def test_the_masked_kernel_is_attention_inside_each_sequence(monkeypatch, chunk):
    """Against SDPA run on each sequence alone, with query chunks that cut across sequences."""
    monkeypatch.setattr(packing, "CHUNK", chunk)
    lengths = [4, 1, 9, 6]
    cu = torch.tensor(pack(np.array(lengths))[0])
    q, k, v = torch.randn(3, 20, 2, 8, generator=torch.Generator().manual_seed(0))  # (T, H, D) each
    got = packing.masked_varlen(q, k, v, cu, 0.0, None)
    expected = torch.cat([F.scaled_dot_product_attention(*(x[a:b].transpose(0, 1) for x in (q, k, v))).transpose(0, 1)
                          for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())])
    torch.testing.assert_close(got, expected)


def test_the_masked_kernel_refuses_a_training_batch_past_its_limit(monkeypatch):
    monkeypatch.setattr(packing, "MASKED_MAX", 10)
    q = torch.randn(12, 2, 8, requires_grad=True)
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    with pytest.raises(HarnessError, match="packed training batch of 12 tokens"):
        packing.masked_varlen(q, q, q, cu, 0.0, None)
    with torch.no_grad():
        assert packing.masked_varlen(q, q, q, cu, 0.0, None).shape == (12, 2, 8)  # no gradients: chunked, allowed
