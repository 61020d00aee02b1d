"""The loop's speed measures change nothing they should not: the host-made mask and one thread for small tops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.run import train
from harness.run.modeling import Encodings, freeze_, frozen_prefix, top_of
from harness.study import TrainSpec
from harness.run.packing import Inputs
from harness.run.train import predict, train_run
from tiny import FAMILIES, tiny_model

CPU = torch.device("cpu")


def encodings(lengths: list[int]) -> Encodings:
    rng = np.random.default_rng(0)
    ids = [np.array([0, *rng.integers(3, 60, size=n - 2), 2], dtype=np.int32) for n in lengths]
    return Encodings(ids, np.array(lengths), pad_id=1)


def test_a_batch_without_padding_gets_no_mask_and_one_with_padding_a_4d_boolean():
    inputs = Inputs(encodings([5, 9, 9, 7]), None, CPU)
    assert set(inputs(np.array([1, 2]))) == {"input_ids"}
    got = inputs(np.array([0, 1, 3]))
    assert got["input_ids"].shape == (3, 9) and got["input_ids"].dtype == torch.long
    mask = got["attention_mask"]
    assert mask.shape == (3, 1, 1, 9) and mask.dtype == torch.bool
    assert mask[:, 0, 0].sum(-1).tolist() == [5, 9, 7]
    assert got["input_ids"][0, 5:].eq(1).all()  # padded with pad_id


@pytest.mark.parametrize("family", FAMILIES)
def test_the_host_made_mask_gives_the_logits_of_the_models_own_2d_mask(family):
    enc = encodings([4, 12, 7, 12, 3])
    rows = np.arange(5)
    model = tiny_model(family).eval()
    width = int(enc.lengths.max())
    ids = torch.full((5, width), 1)
    for i, x in enumerate(enc.ids):
        ids[i, :len(x)] = torch.from_numpy(x.astype(np.int64))
    mask_2d = (torch.arange(width)[None] < torch.from_numpy(enc.lengths)[:, None]).long()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask_2d).logits
    torch.testing.assert_close(predict(model, Inputs(enc, None, CPU), rows), expected, rtol=1e-5, atol=1e-6)


def test_a_small_top_on_the_cpu_trains_with_one_thread_and_restores_the_count(monkeypatch):
    enc = encodings([6, 8, 10, 12] * 8)
    labels = np.arange(32) % 2
    seen = []
    step = train.train_step
    monkeypatch.setattr(train, "train_step", lambda *a: seen.append(torch.get_num_threads()) or step(*a))
    before = torch.get_num_threads()
    states = frozen_prefix(tiny_model("bert"), enc, np.arange(32), [4], CPU)[4]
    model = tiny_model("bert")
    freeze_(model, 4)
    train_run(top_of(model, 4), Inputs(enc, states, CPU), labels, np.arange(24), np.arange(24, 32),
              np.arange(0), lr=1e-3, batch_size=8, epochs=1, seed=0, spec=TrainSpec())
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before
