"""Freezing depth and the frozen-prefix top, for the BERT, DistilBERT and RoBERTa families."""

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.run.modeling import Encodings, encoder_parts, freeze_, frozen_prefix, resolve_depth, top_of
from harness.run.packing import Inputs
from harness.run.train import predict
from tiny import FAMILIES, tiny_model

CPU = torch.device("cpu")

# parameters outside embeddings and blocks: the head each family trains when everything is frozen
HEAD = {"bert": ("bert.pooler", "classifier"), "distilbert": ("pre_classifier", "classifier"),
        "roberta": ("classifier",)}


def encodings(n: int = 12, seed: int = 0) -> Encodings:
    rng = np.random.default_rng(seed)
    ids = [np.concatenate([[0], rng.integers(3, 60, size=rng.integers(3, 20)), [2]]).astype(np.int32)
           for _ in range(n)]
    return Encodings(ids, np.array([len(x) for x in ids]), pad_id=1)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("freeze", [0, 1, 3, "all"])
def test_freezing_leaves_exactly_the_upper_blocks_and_head_trainable(family, freeze):
    model = tiny_model(family)
    depth = resolve_depth(freeze, model)
    trainable = freeze_(model, depth)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    if depth == 0:
        assert trainable == sum(p.numel() for p in model.parameters())
        return
    assert not any(".embeddings." in f".{n}" for n in names)
    for i in range(4):
        in_block = [n for n in names if f".layer.{i}." in n]
        assert bool(in_block) == (i >= depth), (i, depth)
    if freeze == "all":
        assert names and all(n.startswith(HEAD[family]) for n in names)


@pytest.mark.parametrize("family", FAMILIES)
def test_freezing_deeper_than_the_model_is_an_error(family):
    with pytest.raises(HarnessError, match="deeper than the model's 4 encoder blocks"):
        resolve_depth(5, tiny_model(family))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_cached_top_gives_the_full_models_logits(family, depth):
    enc = encodings()
    rows = np.arange(len(enc.ids))
    full = tiny_model(family).eval()
    expected = predict(full, Inputs(enc, None, torch.device("cpu")), rows)
    states = frozen_prefix(tiny_model(family), enc, rows, [depth], torch.device("cpu"), batch_size=5)
    top = top_of(tiny_model(family), depth)
    assert len(encoder_parts(top)[2]) == 4 - depth
    got = predict(top, Inputs(enc, states[depth], torch.device("cpu")), rows)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    if depth == 4:
        assert states[depth].shape[1] == 1  # classifier only keeps the vector the head reads


def test_cached_top_trains_only_what_is_left():
    top = top_of(tiny_model("bert"), 3)
    enc = encodings()
    states = frozen_prefix(tiny_model("bert"), enc, np.arange(12), [3], torch.device("cpu"))
    inputs = Inputs(enc, states[3], torch.device("cpu"))
    top.train()
    loss = top(**inputs(np.arange(4))).logits.sum()
    loss.backward()
    assert all(p.grad is not None for p in top.parameters() if p.requires_grad)


@pytest.mark.parametrize("depth", [0, 2, 4])
def test_holding_only_the_rows_a_run_touches_gives_the_same_logits(depth):
    """The frozen-prefix states (and padded ids) of some rows only, looked up by row: the logits of those
    rows are those computed with every row held; a row not held is an error, not another row's state."""
    enc = encodings(20)
    some = np.array([1, 4, 5, 9, 13, 17])
    model = top_of(tiny_model("bert"), depth) if depth else tiny_model("bert")
    every = frozen_prefix(tiny_model("bert"), enc, np.arange(20), [depth], CPU)[depth] if depth else None
    held = frozen_prefix(tiny_model("bert"), enc, some, [depth], CPU)[depth] if depth else None
    assert held is None or held.shape[0] == len(some)
    expected = predict(model, Inputs(enc, every, CPU), some[::-1])
    got = predict(model, Inputs(enc, held, CPU, rows=some), some[::-1])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"rows \[2\] were not encoded"):
        Inputs(enc, held, CPU, rows=some)(np.array([1, 2]))
