"""python -m bench.gpu_check STAGE: one stage of bench/gpu_check.sh, its result saved as WORK/STAGE.json.

Stages: env (the card, versions, kernels available, matmul and copy ceilings), harness (the
MFU variants, bench.gpu.VARIANTS), peer (the Trainer), share (K classifier-only trials at
once), mlu (a slice of the MLU grid at full scale, extrapolated), summary (merges what the
others saved into OUT/<card>_<date>.json and OUT/summary.md; prints the short table).
GPU_CHECK_DRY=1 runs every stage on the CPU with a shrunken model and a few steps; a stage
skips what would run past GPU_CHECK_UNTIL (seconds since the epoch); GPU_CHECK_VARIANTS
(name@batch, comma-separated) picks some of the harness's variants, for a second call.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

STAGES = ("env", "harness", "peer", "share", "mlu")
DRY = os.environ.get("GPU_CHECK_DRY") == "1"
NEED_S = {"off": 20, "static": 80, "auto": 60}  # a variant starts only with this much time left


def until() -> float:
    return float(os.environ.get("GPU_CHECK_UNTIL", time.time() + 3600))


def save(work: Path, stage: str, result: dict) -> None:
    tmp = work / f"{stage}.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(work / f"{stage}.json")


def context(args: argparse.Namespace):
    """(data, device, scale) as every measuring stage needs them."""
    import torch

    from bench.cells import load_data
    from bench.gpu import DRY as DRY_SCALE
    from bench.gpu import Scale

    device = torch.device("cpu" if DRY or not torch.cuda.is_available() else "cuda")
    return load_data(args.data), device, DRY_SCALE if DRY else Scale()


def env_stage(args: argparse.Namespace) -> dict:
    import torch

    from bench.report import provenance
    from harness.run import packing

    device = context(args)[1]
    out = {"dry_run": DRY, "torch": torch.__version__, "cuda": torch.version.cuda,
           "varlen_attn_api": packing.varlen_api(), "flash_varlen": packing.flash_problem(device) or "ok",
           "provenance": provenance(sys.argv[1:], torch.cuda.get_device_name() if device.type == "cuda" else "cpu", [])}
    for name in ("transformers", "triton"):
        out[name] = _version(name)
    if device.type == "cuda":
        out |= ceilings(device)
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,"
             "temperature.gpu,memory.used,memory.total", "--format=csv"], capture_output=True, text=True).stdout
    return out


def ceilings(device) -> dict:
    """The card's measured ceilings (METHOD.md): a bf16 matrix product on random data, and a device copy."""
    import torch

    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    x = torch.empty(2 ** 30, device=device, dtype=torch.float32).normal_()  # 4 GiB, far past the L2
    y = torch.empty_like(x)
    out = {}
    for name, op, work in (("matmul_tflops", lambda: a @ b, 2 * 8192 ** 3 / 1e12),
                           ("copy_tb_s", lambda: y.copy_(x), 2 * x.numel() * 4 / 1e12)):
        for _ in range(3):
            op()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            op()
        end.record()
        end.synchronize()
        out[name] = work * 10 / (start.elapsed_time(end) / 1e3)
    return out


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def dry(layout):
    """On the CPU the packed layout runs its masked attention, so that the dry run goes through packing."""
    return dataclasses.replace(layout, attention="masked") if DRY and layout.kind == "packed" else layout


def harness_stage(args: argparse.Namespace) -> dict:
    from bench.gpu import VARIANTS, harness_rows

    data, device, scale = context(args)
    asked = os.environ.get("GPU_CHECK_VARIANTS")  # e.g. "bucketed+compile@256,padded+compile@256"
    variants = [dataclasses.replace(v, layout=dry(v.layout)) for v in VARIANTS
                if not asked or f"{v.name}@{v.batch}" in asked.split(",")]
    keep_going = lambda v: time.time() + NEED_S[v.compile] < until()  # noqa: E731
    return harness_rows(data, args.model, device, variants, scale, keep_going,
                        on_row=lambda head, row: save(args.work, "harness", head))


def peer_stage(args: argparse.Namespace) -> dict:
    from bench.gpu import peer_rows

    data, device, scale = context(args)
    return peer_rows(data, args.model, device, ["random", "group_by_length"], 256, scale,
                     keep_going=lambda sampling: time.time() + 25 < until(),
                     on_row=lambda head, row: save(args.work, "peer", head))


def share_stage(args: argparse.Namespace) -> dict:
    from bench.gpu_share import k_at_once

    data, device, scale = context(args)
    return k_at_once(data, args.model, device, [1, 2] if DRY else [1, 2, 4, 8], 3.0 if DRY else 5.0, scale,
                     deadline=until())


def mlu_stage(args: argparse.Namespace) -> dict:
    from bench.gpu_share import FULL, mlu_slice

    data, device, scale = context(args)
    if DRY:
        return mlu_slice(data, args.model, device, rows=2000, sample=512, scale=scale, full=dry(FULL))
    return mlu_slice(data, args.model, device)


def merged(work: Path) -> dict:
    """The run file: the harness stage's header, every side's variants, the other stages beside them."""
    parts = {s: json.loads((work / f"{s}.json").read_text()) for s in STAGES if (work / f"{s}.json").exists()}
    env = parts.get("env", {})
    gpu = dict(parts.get("harness") or parts.get("peer") or {"gpu": env.get("provenance", {}).get("device", "?")})
    gpu["variants"] = parts.get("harness", {}).get("variants", []) + parts.get("peer", {}).get("variants", [])
    gpu |= {"batch_size": 256, "env": env, "k_at_once": parts.get("share"), "mlu_slice": parts.get("mlu")}
    gpu["torch"] = env.get("torch", gpu.get("torch"))
    status = {p.stem.removeprefix("status_"): p.read_text().strip() for p in sorted(work.glob("status_*.txt"))}
    return {"gpu": gpu, "tests": tests(work), "stages_not_run": {k: v for k, v in status.items() if v != "ok"},
            "dry_run": DRY, "provenance": env.get("provenance")}


def tests(work: Path) -> str:
    """pytest's counts from its JUnit XML, with the failing tests named."""
    path = work / "tests.xml"
    if not path.exists():
        return "not run"
    suite = ElementTree.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    failed = [c.get("name") for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    n, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    return f"{n - skipped - len(failed)} passed, {len(failed)} failed, {skipped} skipped" + (
        f" (failed: {', '.join(failed)})" if failed else "")


def run_name(run: dict) -> str:
    """<card>_<date>: h100_2026-11-27; a dry run is cpu-dry_<date>."""
    name = str(run["gpu"].get("gpu", "?"))
    card = next((c for c in ("h200", "h100", "a100") if c in name.lower()), "cpu-dry" if DRY else "gpu")
    return f"{card}_{dt.datetime.now(dt.timezone.utc).date().isoformat()}"


def summary_stage(args: argparse.Namespace) -> None:
    from bench.gpu_table import render_gpu, summary

    run = merged(args.work)
    name = run_name(run)
    (args.out / f"{name}.json").write_text(json.dumps(run, indent=2, default=str))
    table = summary(run)
    (args.out / "summary.md").write_text("\n".join([f"# GPU check: {name}", "", "```", table, "```"]
                                                   + render_gpu({name: run["gpu"]}, 0.40)) + "\n")
    if not args.quiet:
        print(table, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=STAGES + ("summary",))
    parser.add_argument("--work", type=Path, required=True, help="directory of the stages' results")
    parser.add_argument("--out", type=Path, default=None, help="summary: where the run file goes")
    parser.add_argument("--data", default=".gpu/amazon_multidomain_8k.csv", help="the benchmark's review CSV")
    parser.add_argument("--model", default=".gpu/tokenizer", help="directory of the bert-base-uncased tokenizer")
    parser.add_argument("--quiet", action="store_true", help="summary: write the files, print nothing")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage == "summary":
        args.out.mkdir(parents=True, exist_ok=True)
        return summary_stage(args)
    started = time.time()
    result = globals()[f"{args.stage}_stage"](args)
    save(args.work, args.stage, result | {"stage_s": time.time() - started})


if __name__ == "__main__":
    main()
