"""On a CUDA device: the packed layout on flash attention's kernel, steps that never wait, compiled blocks;
and, on any machine, the pieces of bench/gpu_check.sh that need no device.

Marked ``gpu``: skipped where CUDA is missing (``make test`` on a CPU machine), run by
``bench/gpu_check.sh`` on a GPU machine. Tolerances are bf16's: the layouts round
differently, so each is held to 3% (relative, in norm) of a float32 padded reference,
where a bookkeeping error (a token in the wrong sequence, a wrong position) moves
logits and gradients by order 1.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from bench import gpu_check
from bench.gpu_table import render_gpu
from harness.run.modeling import Encodings, autocast
from harness.run.packing import Layout, compile_blocks
from harness.study import TrainSpec
from harness.run.packing import Inputs
from harness.run.train import make_optimizer, make_schedule, train_step
from tiny import FAMILIES, tiny_model

CUDA = torch.device("cuda")
LAYOUTS = {"padded": Layout(), "bucketed": Layout("bucketed", widths=(16, 32, 64)),
           "packed": Layout("packed", attention="flash")}
BF16 = 3e-2  # relative error in norm, against float32
# the gradients checked are those of a random projection of the logits: cross-entropy's, on a
# tiny random model whose outputs barely depend on the input, cancel between examples and leave
# mostly rounding (29% apart between bf16 and float32 on the CPU, against 0.6% here)
PROJECTION = torch.randn(24, 2, generator=torch.Generator().manual_seed(0))


def on_cuda(test):
    """Marked ``gpu``, and skipped without a CUDA device."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(test))


def encodings(n: int = 24, seed: int = 0) -> Encodings:
    rng = np.random.default_rng(seed)
    ids = [np.array([0, *rng.integers(3, 60, size=k - 2), 2], dtype=np.int32) for k in rng.integers(3, 60, size=n)]
    return Encodings(ids, np.array([len(x) for x in ids]), pad_id=1)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def logits_and_grads(family: str, layout: Layout, bf16: bool):
    enc, rows = encodings(), np.arange(24)
    model = tiny_model(family).to(CUDA).eval()
    inputs = Inputs(enc, None, CUDA, layout)
    inputs.attach(model)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        logits = model(**inputs(rows)).logits
    (logits.float() * PROJECTION.to(logits.device)).sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return logits.detach().float(), grads


@pytest.mark.parametrize("family", FAMILIES)
@on_cuda
def test_packed_on_flash_gives_the_padded_logits_and_gradients(family):
    expected, expected_grads = logits_and_grads(family, Layout(), bf16=False)
    got, grads = logits_and_grads(family, LAYOUTS["packed"], bf16=True)
    assert relative(got, expected) < BF16
    assert relative(grads, expected_grads) < BF16


@on_cuda
def test_packed_training_keeps_attention_dropout():
    """The flash kernel is called with the module's dropout (here the only dropout): two training
    passes differ, eval ones agree."""
    enc, rows = encodings(), np.arange(24)
    config = FAMILIES["distilbert"]()
    config.dropout, config.seq_classif_dropout, config.attention_dropout = 0.0, 0.0, 0.5
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa").to(CUDA)
    inputs = Inputs(enc, None, CUDA, LAYOUTS["packed"])
    inputs.attach(model)
    with autocast(CUDA):
        train = [model.train()(**inputs(rows)).logits for _ in range(2)]
        evals = [model.eval()(**inputs(rows)).logits for _ in range(2)]
    assert relative(train[0], train[1]) > 1e-3
    assert torch.equal(evals[0], evals[1])


def sync_sites(step) -> list[str]:
    """Where CUDA's sync debug mode saw ``step`` wait for the device: file:line of each warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


@pytest.mark.parametrize("layout", LAYOUTS)
@on_cuda
def test_a_training_step_never_waits_for_the_device(layout):
    """Forward, backward, clipping, the fused AdamW update and the schedule: no host-device sync."""
    enc = encodings()
    model = tiny_model("distilbert").to(CUDA).train()
    inputs = Inputs(enc, None, CUDA, LAYOUTS[layout])
    inputs.attach(model)
    y = torch.as_tensor(np.arange(24) % 2, device=CUDA)
    spec = TrainSpec(max_grad_norm=1.0)
    optimizer = make_optimizer(model, spec, 1e-3)
    schedule = make_schedule(optimizer, spec, 10)
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        total = train_step(model, inputs, np.arange(24), y, 12)
        torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    step()  # the first step creates the optimizer's state
    assert sync_sites(step) == []


@on_cuda
def test_compiled_blocks_train_and_predict_as_eager_ones():
    """Regional compilation of the packed path: forward and backward through the flash op compile,
    in eval mode (compared with eager) and in training mode, attention dropout included."""
    expected, expected_grads = logits_and_grads("distilbert", LAYOUTS["packed"], bf16=True)
    enc, rows = encodings(), np.arange(24)
    model = compile_blocks(tiny_model("distilbert").to(CUDA).eval(), dynamic=None)
    inputs = Inputs(enc, None, CUDA, LAYOUTS["packed"])
    inputs.attach(model)
    with autocast(CUDA):
        logits = model(**inputs(rows)).logits
    (logits.float() * PROJECTION.to(logits.device)).sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert relative(logits, expected) < BF16 and relative(grads, expected_grads) < BF16
    model.train().zero_grad()
    with autocast(CUDA):
        logits = model(**inputs(rows[:20])).logits  # another packed length too
    logits.float().sum().backward()
    assert all(p.grad.isfinite().all() for p in model.parameters() if p.grad is not None)


def test_local_workers_share_the_one_visible_gpu(monkeypatch):
    """``python -m harness worker --processes K`` with one GPU visible leaves every worker on it;
    with several, it deals them out one each."""
    pytest.importorskip("optuna")
    from harness.run import worker

    class Child:
        def __init__(self, command, env):
            self.env = env
            children.append(self)

        def wait(self):
            return 0

    monkeypatch.setattr(worker.subprocess, "Popen", Child)
    monkeypatch.setattr(worker.signal, "signal", lambda *args: None)
    for gpus, expected in [(["0"], [os.environ.get("CUDA_VISIBLE_DEVICES")] * 3), (["0", "1"], ["0", "1", "0"])]:
        children = []
        monkeypatch.setattr(worker, "visible_gpus", lambda: gpus)
        assert worker.launch(["study.toml"], "sqlite:///x.db", 3) == 0
        assert [c.env.get("CUDA_VISIBLE_DEVICES") for c in children] == expected


def test_the_gpu_table_renders_older_and_newer_runs():
    older = {"gpu": "NVIDIA H100", "batch_size": 256, "harness_samples_s": 8959.4, "harness_mfu": 0.2296,
             "harness_syncs": "122 in 145 steps, 5 epochs", "peer_samples_s": 4374.9, "peer_mfu": 0.1121}
    newer = {"gpu": "NVIDIA H100", "variants": [
        {"variant": "packed+compile", "side": "harness", "batch": 256, "samples_s": 16000.4, "mfu": 0.41, "syncs": 12,
         "steps": 112, "path": "packed (flash varlen)"},
        {"variant": "bucketed+compile", "side": "harness", "batch": 256, "skipped": "time budget"}],
        "k_at_once": {"cell": "head-only", "window_s": 6.0, "k": {"1": {"epochs_s": 40.0, "speedup": 1.0,
                                                                         "max_memory_gib_per_process": 0.6}}}}
    lines = render_gpu({"older": older, "newer": newer}, 0.40)
    for row in ["| older | NVIDIA H100 | 256 | harness padded | 8959 | 23.0% | 122 in 145 steps, 5 epochs | padded |",
                "| older | NVIDIA H100 | 256 | peer trainer random | 4375 | 11.2% | - | padded |",
                "| newer | NVIDIA H100 | 256 | harness packed+compile | 16000 | 41.0% | 12 in 112 steps | "
                "packed (flash varlen) |",
                "| newer | NVIDIA H100 | 256 | harness bucketed+compile | not run: time budget | - | - | - |"]:
        assert row in lines
    assert "| 1 | 40.0 | 1.00 | 0.60 |" in lines


def test_the_check_counts_pytests_outcomes_and_names_the_failures(tmp_path):
    (tmp_path / "tests.xml").write_text(
        '<testsuites><testsuite tests="4" skipped="1"><testcase name="a"/><testcase name="b"><failure/></testcase>'
        '<testcase name="c"/><testcase name="d"><skipped/></testcase></testsuite></testsuites>')
    assert gpu_check.tests(tmp_path) == "2 passed, 1 failed, 1 skipped (failed: b)"
    assert gpu_check.tests(tmp_path / "none") == "not run"
