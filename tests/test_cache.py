"""The frozen-prefix cache changes no logit: the cached top gives the full model's logits.

The reference is the whole model with embeddings and the lowest ``depth`` blocks frozen
(``freeze_``), in eval mode, fed token ids; the cached path runs those frozen parts once
(``frozen_prefix``) and the model's top (``top_of``) from the stored states. Checked on a
tiny randomly initialised BERT built here and on the packaged all-MiniLM-L6-v2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from harness.run.modeling import Encodings, freeze_, frozen_prefix, load_classifier, model_path, resolve_depth, top_of
from harness.run.packing import Inputs
from harness.run.train import predict

CPU = torch.device("cpu")
MINILM = "builtin:all-MiniLM-L6-v2"
DEPTHS = [1, 4, "all"]  # lowest block, a middle depth, every block (classifier only)
TEXTS = ["A gripping story, I could not put it down.", "Broke after two days.",
         "The blender works, but it is loud and the lid leaks when you fill it to the top line.",
         "ok", "Five stars: fast shipping, exactly as described, and the kids love it.",
         "Not worth the money; the second disc would not play at all and support never answered."]


def tiny_bert(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")


def random_encodings(n: int = 13, seed: int = 0) -> Encodings:
    rng = np.random.default_rng(seed)
    ids = [np.array([101 % 120, *rng.integers(5, 120, size=rng.integers(2, 30)), 102 % 120], dtype=np.int32)
           for _ in range(n)]
    return Encodings(ids, np.array([len(x) for x in ids]), pad_id=0)


def text_encodings() -> Encodings:
    tokenizer = AutoTokenizer.from_pretrained(model_path(MINILM))
    ids = [np.asarray(x, dtype=np.int32) for x in tokenizer(TEXTS, truncation=True, max_length=128)["input_ids"]]
    return Encodings(ids, np.array([len(x) for x in ids]), pad_id=tokenizer.pad_token_id)


def full_and_cached(make, enc: Encodings, freeze: int | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits of the frozen full model, logits of the cached top), each (N, 2); ``make()`` builds
    the same model (same weights, same head) every call."""
    rows = np.arange(len(enc.ids))
    full = make()
    depth = resolve_depth(freeze, full)
    freeze_(full, depth)
    expected = predict(full, Inputs(enc, None, CPU), rows)  # predict runs in eval mode
    states = frozen_prefix(make(), enc, rows, [depth], CPU, batch_size=4)[depth]
    top = make()
    freeze_(top, depth)
    got = predict(top_of(top, depth), Inputs(enc, states, CPU), rows)
    return expected, got


@pytest.mark.parametrize("freeze", DEPTHS)
def test_cached_logits_equal_the_frozen_full_model_on_a_tiny_random_bert(freeze):
    expected, got = full_and_cached(lambda: tiny_bert(seed=3), random_encodings(), freeze)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("freeze", DEPTHS)
def test_cached_logits_equal_the_frozen_full_model_on_minilm(freeze):
    expected, got = full_and_cached(lambda: load_classifier(MINILM, 2, seed=7), text_encodings(), freeze)
    assert expected.abs().max() > 0  # a real, non-degenerate head
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_the_cache_for_all_blocks_keeps_only_the_token_the_head_reads():
    enc = random_encodings()
    states = frozen_prefix(tiny_bert(seed=3), enc, np.arange(len(enc.ids)), [6, 4], CPU)
    assert states[6].shape == (len(enc.ids), 1, 32)
    assert states[4].shape == (len(enc.ids), int(enc.lengths.max()), 32)
