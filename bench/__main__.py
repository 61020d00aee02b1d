"""python -m bench --cells head-only,top-2,full

Runs the benchmark (bench/__init__.py): for each cell, the peer (Hugging Face Trainer with
Optuna) and the harness side by side, interleaved repetition by repetition so
that a busy machine slows both alike; for head-only also the limit (one forward
pass through the frozen part). On a GPU it adds samples/s and MFU of full
fine-tuning in bf16. Ends by printing one JSON object per cell, each on its own
line; writes bench/results.json, bench/RESULTS.md and appends bench/history.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import torch

from bench.cells import CELLS, DATA, BenchData, Cell, load_data, parse_cells
from bench.report import SLOW_S, provenance, summarize, write
from harness.errors import HarnessError

HERE = Path(__file__).resolve().parent
NOTES = [
    "The peer saves a checkpoint every epoch (load_best_model_at_end needs it; save_only_model=True, "
    "save_total_limit=1); the harness keeps the best epoch's weights in memory.",
    "Both sides train alike: AdamW, no weight decay, no warmup, linear decay, gradient norm clipped at 1, "
    "early stopping on validation accuracy with patience 3, the same Optuna sampler (TPE, seed 0) and "
    "ranges, no pruning. The peer's Optuna objective is the last evaluation's accuracy (Trainer's own "
    "behaviour); the harness's is the best epoch's.",
    "The Optuna trials tune with seed 0, which also evaluates: the harness scores each finished trial on the "
    "test set (held back from tuning) and its seed-0 evaluation run is the best trial itself (same seed, split, "
    "lr and batch size; bit for bit the same run on the CPU, tests/test_determinism.py), as harness.run.runner does "
    "whenever a tuning seed also evaluates; the peer trains seed 0 again.",
    "Data: 500 test reviews fixed (stratified, seed 0); per seed 500 rows from the other 7,500, 10% of "
    "them the validation split; the same row indices on both sides.",
]


def run_cell(cell: Cell, data: BenchData, model: str, device: torch.device, repeats: int) -> dict:
    """Repetitions of peer, harness and (head-only) limit, interleaved; a side over 5 min runs once."""
    from bench.ours import limit_seconds, run_ours
    from bench.peer import run_peer

    peer, ours, limit = [], [], []
    for rep in range(repeats):
        for name, runs, run in (("peer", peer, run_peer), ("harness", ours, run_ours)):
            if runs and runs[0].seconds > SLOW_S:
                continue
            with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs: keep stdout JSON
                runs.append(run(cell, data, model, device))
            log(f"{cell.name} rep {rep + 1}: {name} {runs[-1].seconds:.1f} s, test acc "
                f"{[round(a, 3) for a in runs[-1].test_acc]}, params {runs[-1].params}, epochs {runs[-1].epochs}")
        if cell.trainable_blocks == 0 and not (limit and limit[0] > SLOW_S):
            limit.append(limit_seconds(cell, data, model, device))
            log(f"{cell.name} rep {rep + 1}: limit (one forward pass) {limit[-1]:.1f} s")
    return summarize(cell.name, peer, ours, limit, len(data.test))


def log(message: str) -> None:
    load = os.getloadavg()[0]
    LOADS.append(load)
    print(f"[bench] {message} (load {load:.1f})", file=sys.stderr, flush=True)


LOADS: list[float] = []


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, of {', '.join(CELLS)}")
    parser.add_argument("--model", default="builtin:all-MiniLM-L6-v2", help="builtin:NAME or a local directory")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per side (a side over 5 min runs once)")
    parser.add_argument("--data", default=str(DATA), help="the review CSV (columns reviewText, isPositive)")
    parser.add_argument("--out", default=str(HERE), help="directory for results.json and RESULTS.md")
    parser.add_argument("--gpu", choices=("auto", "off", "only"), default="auto",
                        help="GPU throughput and MFU: when CUDA is there (auto), never, or nothing else")
    parser.add_argument("--compile", action="store_true", help="GPU: also time the harness under torch.compile")
    parser.add_argument("--gpu-batch", type=int, default=256, help="GPU: training batch size of both sides")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of both sides (torch.set_num_threads; 0 = torch's default)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: expected >= 1")
    if args.threads < 0:
        parser.error(f"--threads {args.threads}: expected >= 0")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    try:
        cells = [] if args.gpu == "only" else parse_cells(args.cells)
        data = load_data(args.data)
    except HarnessError as exc:
        sys.exit(f"error: {exc}")
    # the harness's own choice (harness.run.runner.pick_device), here without importing Optuna, which
    # the GPU machines lack
    device = torch.device(os.environ.get("HARNESS_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
        NOTES.append(f"Both sides ran with torch.set_num_threads({args.threads}) (--threads): on cores that other "
                     "processes also use, fewer threads per process wait less on each other.")
    results = {"cells": [], "notes": NOTES, "gpu": None}
    for cell in cells:
        results["cells"].append(run_cell(cell, data, args.model, device, args.repeats))
        save(results, argv, device, Path(args.out), final=False)  # a cut-short run leaves its finished cells
    if args.gpu != "off" and device.type == "cuda":
        from bench.gpu import gpu_report

        with contextlib.redirect_stdout(sys.stderr):
            results["gpu"] = gpu_report(data, args.model, device, args.compile, args.gpu_batch)
        print(json.dumps(results["gpu"]), flush=True)
    save(results, argv, device, Path(args.out), final=True)
    for line in results["cells"]:
        print(json.dumps(line), flush=True)
    return results["cells"]


def save(results: dict, argv: list[str], device: torch.device, out: Path, final: bool) -> None:
    if results["gpu"] is None:  # a CPU run quotes the stored GPU runs (bench/gpu_runs), marked as such
        results["gpu_separate_runs"] = {path.stem: json.loads(path.read_text())["gpu"]
                                        for path in sorted((HERE / "gpu_runs").glob("*.json"))}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    results["provenance"] = provenance(argv, name, LOADS) | {"complete": final}
    write(results, out, history=final)


if __name__ == "__main__":
    main()
