"""Per-cell summary lines, the speed targets, and the files a run leaves.

Every function here is pure except ``write``: the Markdown table is rendered
from the stored results alone, so it can be redrawn without training anything.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import statistics
from pathlib import Path

import torch

from bench.cells import SideResult
from bench.gpu_table import render_gpu
from harness.store import git_commit, package_versions, write_atomic

SLOW_S = 300.0  # the protocol lets a side slower than this run once per cell
# the speed targets: peer time over harness time at least this much, per cell
TARGET_RATIO = {"head-only": 15.0, "top-2": 2.0, "full": 1.5}
TARGET_LIMIT = 1.5  # head-only: harness time over the one-forward-pass limit at most this
TARGET_MFU = 0.40  # GPU, full fine-tuning in bf16


def diff_se(p: float, q: float, n: int) -> float:
    """Standard error of the difference of two accuracies on n test examples, sqrt(p(1-p)/n + q(1-q)/n)
    (Wald interval for two proportions: Agresti, Categorical Data Analysis, 3rd ed., section 1.4.2)."""
    return math.sqrt(p * (1 - p) / n + q * (1 - q) / n)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(cell: str, peer: list[SideResult], ours: list[SideResult], limit: list[float],
              n_test: int) -> dict:
    """One JSON-ready line: medians with min and max, ratio, accuracies, the limit, the targets."""
    p, h = spread([r.seconds for r in peer]), spread([r.seconds for r in ours])
    p_acc, h_acc = statistics.fmean(peer[0].test_acc), statistics.fmean(ours[0].test_acc)
    se = diff_se(p_acc, h_acc, n_test)
    line = {"cell": cell, "peer_s": p["median"], "harness_s": h["median"], "ratio": p["median"] / h["median"],
            "peer_test_acc": p_acc, "harness_test_acc": h_acc, "test_acc_se": se,
            "limit_ratio": h["median"] / statistics.median(limit) if limit else None,
            "limit_s": statistics.median(limit) if limit else None,
            "peer_s_min": p["min"], "peer_s_max": p["max"], "peer_runs": p["n"],
            "harness_s_min": h["min"], "harness_s_max": h["max"], "harness_runs": h["n"],
            "acc_differs_beyond_2se": abs(p_acc - h_acc) > 2 * se,
            "peer_params": peer[0].params, "harness_params": ours[0].params,
            "peer_epochs": peer[0].epochs, "harness_epochs": ours[0].epochs,
            "peer_seed_acc": peer[0].test_acc, "harness_seed_acc": ours[0].test_acc}
    line["targets"] = targets(line)
    return line


def targets(line: dict) -> dict:
    """Each speed target that applies to the cell: True when met."""
    met = {}
    if line["cell"] in TARGET_RATIO:
        met[f"ratio >= {TARGET_RATIO[line['cell']]:g}"] = line["ratio"] >= TARGET_RATIO[line["cell"]]
    if line["cell"] == "head-only":
        met["harness acc not lower beyond 2 se"] = line["harness_test_acc"] >= line["peer_test_acc"] - 2 * line[
            "test_acc_se"]
        if line["limit_ratio"] is not None:
            met[f"limit ratio <= {TARGET_LIMIT:g}"] = line["limit_ratio"] <= TARGET_LIMIT
    return met


def provenance(argv: list[str], device: str, shared_load: list[float]) -> dict:
    return {"command": "python -m bench " + " ".join(argv), "git_commit": git_commit(),
            "packages": package_versions() | {"accelerate": _version("accelerate")},
            "python": platform.python_version(), "device": device, "host": platform.node(),
            "torch_threads": torch.get_num_threads(), "cores": os.cpu_count(), "load_average_during_run": shared_load,
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _runs(line: dict, side: str) -> str:
    lo, hi, n = line[f"{side}_s_min"], line[f"{side}_s_max"], line[f"{side}_runs"]
    if n == 1:
        return f"{line[f'{side}_s']:.1f} (1 run{', over 5 min' if line[f'{side}_s'] > SLOW_S else ''})"
    return f"{line[f'{side}_s']:.1f} [{lo:.1f}, {hi:.1f}]"


def render(results: dict) -> str:
    """RESULTS.md: the command, the provenance, one table row per cell, the GPU figures, the targets."""
    prov = results["provenance"]
    out = ["# Benchmark: harness vs Hugging Face Trainer + Optuna", "",
           "Protocol: the docstring of bench/__init__.py. Produced by:", "", "```", prov["command"], "```", "",
           f"git {prov['git_commit']}, device {prov['device']}, torch threads {prov['torch_threads']}, "
           f"finished {prov['finished']}.", ""]
    load = prov.get("load_average_during_run") or []
    cores = prov.get("cores") or prov["torch_threads"]
    if load and max(load) > cores + 0.5:
        out += [f"The machine was shared while this ran: 1-minute load average between {min(load):.1f} and "
                f"{max(load):.1f} on {cores} cores. Both sides of a cell ran interleaved, "
                "so the ratios are fairer than the seconds.", ""]
    out += ["Seconds are medians of the runs with [min, max]; accuracy is the mean test accuracy over the "
            "cell's seeds on the fixed 500-review test set; se is the standard error of the difference. "
            "Higher ratio is better; limit ratio closer to 1 is better.", "",
            "| cell | peer s | harness s | ratio peer/harness | peer acc | harness acc | se | limit s | "
            "limit ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for line in results["cells"]:
        flag = " (differ > 2 se)" if line["acc_differs_beyond_2se"] else ""
        limit = (f"{line['limit_s']:.1f} | {line['limit_ratio']:.2f}" if line["limit_ratio"] is not None
                 else "- | -")
        out.append(f"| {line['cell']} | {_runs(line, 'peer')} | {_runs(line, 'harness')} | {line['ratio']:.2f} | "
                   f"{line['peer_test_acc']:.3f} | {line['harness_test_acc']:.3f}{flag} | "
                   f"{line['test_acc_se']:.3f} | {limit} |")
    out += ["", "Targets:", ""]
    for line in results["cells"]:
        for name, ok in line["targets"].items():
            out.append(f"- {line['cell']}: {name}: {'met' if ok else 'NOT met'}")
    runs = {"this run": results["gpu"]} if results.get("gpu") else results.get("gpu_separate_runs", {})
    out += render_gpu(runs, TARGET_MFU)
    if not prov.get("complete", True):
        out += ["", "**Partial: the run was still going (or was stopped) after the cells above.**"]
    out += ["", "Notes:", ""] + [f"- {n}" for n in results.get("notes", [])]
    return "\n".join(out) + "\n"


def write(results: dict, directory: Path, history: bool = True) -> None:
    """results.json (this run) and RESULTS.md; a finished run is also appended to history.jsonl."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / "results.json", json.dumps(results, indent=2))
    write_atomic(directory / "RESULTS.md", render(results))
    if history:
        with open(directory / "history.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(results) + "\n")


def redraw(bench: Path) -> None:
    """bench/RESULTS.md again from bench/results.json, with the GPU runs now in bench/gpu_runs (trains nothing)."""
    results = json.loads((bench / "results.json").read_text())
    if results.get("gpu") is None:
        results["gpu_separate_runs"] = {p.stem: json.loads(p.read_text())["gpu"]
                                        for p in sorted((bench / "gpu_runs").glob("*.json"))}
    write_atomic(bench / "RESULTS.md", render(results))


if __name__ == "__main__":  # python -m bench.report [BENCH_DIR]: redraw RESULTS.md
    import sys

    redraw(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
