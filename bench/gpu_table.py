"""The GPU runs as Markdown: one table row per variant, then sharing and the grid's extrapolation.

Pure functions of the stored run files (bench/gpu_runs/*.json); no torch, so that
``bench/gpu_check.sh`` prints its summary without loading it. ``python -m bench.report``
redraws bench/RESULTS.md from bench/results.json and the run files, training nothing.
"""

from __future__ import annotations

# runs stored before variants were named: their fixed sides, as variants
OLD_SIDES = {"harness": ("harness", "padded"), "harness_compiled": ("harness", "padded, whole model compiled"),
             "peer": ("peer", "trainer random")}


def variants(gpu: dict) -> list[dict]:
    """A run's rows, whether it names its variants or is an older run with fixed sides."""
    if "variants" in gpu:
        return gpu["variants"]
    return [{"variant": variant, "side": who, "batch": gpu.get("batch_size"), "samples_s": gpu[f"{side}_samples_s"],
             "mfu": gpu[f"{side}_mfu"], "syncs": gpu.get(f"{side}_syncs"), "path": "padded"}
            for side, (who, variant) in OLD_SIDES.items() if f"{side}_samples_s" in gpu]


def _num(value, form: str) -> str:
    return "-" if value is None else format(value, form)


def _syncs(row: dict) -> str:
    if isinstance(row.get("syncs"), str):  # older runs wrote "N in S steps, E epochs"
        return row["syncs"]
    if row.get("syncs") is None:
        return "-"
    return f"{row['syncs']} in {row['steps']} steps" if row.get("steps") else str(row["syncs"])


def variant_rows(name: str, gpu: dict) -> list[str]:
    out = []
    for row in variants(gpu):
        what = row.get("error") or row.get("skipped")
        if what:
            out.append(f"| {name} | {gpu['gpu']} | {row['batch']} | {row['side']} {row['variant']} | "
                       f"not run: {what[:120]} | - | - | - |")
            continue
        mfu = "-" if row.get("mfu") is None else f"{100 * row['mfu']:.1f}%"
        out.append(f"| {name} | {gpu['gpu']} | {row['batch']} | {row['side']} {row['variant']} | "
                   f"{row['samples_s']:.0f} | {mfu} | {_syncs(row)} | {row.get('path', '-')} |")
    return out


def render_gpu(runs: dict[str, dict], target_mfu: float) -> list[str]:
    """RESULTS.md's GPU section for every stored run, oldest format included."""
    if not runs:
        return []
    out = ["", "GPU: full fine-tuning of a DistilBERT-sized classifier (66M parameters, random weights) at "
           "max_length 128 in bf16 on the same reviews, each side in one process on one card; steady "
           f"epochs; MFU against the dense bf16 peak; target MFU >= {target_mfu:.0%} and faster than the "
           "peer. Host-device syncs counted by CUDA's sync debug mode over the steady epochs (validation "
           "and the epoch-end reads included; older runs: the whole run); path: the batch layout that ran.", "",
           "| run | card | batch | side and variant | training samples/s | MFU | syncs | path |",
           "|---|---|---|---|---|---|---|---|"]
    for name, gpu in runs.items():
        out += variant_rows(name, gpu)
    for name, gpu in runs.items():
        out += share_lines(name, gpu.get("k_at_once")) + grid_lines(name, gpu.get("mlu_slice"))
    return out


def share_lines(name: str, share: dict | None) -> list[str]:
    if not share or "k" not in share:
        return []
    out = ["", f"{name}: K classifier-only trials at once on the one card ({share['cell']}; epochs/s summed "
           f"over K processes in a {share['window_s']:.0f} s window; speed-up over one process):", "",
           "| K | epochs/s | speed-up | GiB per process |", "|---|---|---|---|"]
    for k, row in share["k"].items():
        out.append(f"| {k} | {_num(row['epochs_s'], '.1f')} | {_num(row['speedup'], '.2f')} | "
                   f"{_num(row['max_memory_gib_per_process'], '.2f')} |")
    return out


def grid_lines(name: str, grid: dict | None) -> list[str]:
    if not grid or "extrapolated_grid" not in grid:
        return []
    ex = grid["extrapolated_grid"]
    return ["", f"{name}: studies/mlu_ablation.toml at full scale ({grid['rows']:,} reviews resampled from the 8k, "
            f"batch {grid['batch']}). Measured: tokenizing {grid['tokenize_s']:.1f} s; the frozen-prefix pass "
            f"{grid['prefix_pass_s']:.1f} s; a classifier-only epoch on all {grid['head_train_rows']:,} training rows "
            f"{grid['head_epoch_s']:.2f} s (peak {_num(grid['head_max_memory_gib'], '.1f')} GiB), so a 20-epoch "
            f"classifier-only run {grid['head_cell_s']:.0f} s; full fine-tuning (packed) "
            f"{1e3 * grid['full_epoch_s_per_row']:.3f} ms per training row and epoch (peak "
            f"{_num(grid['full_max_memory_gib'], '.1f')} GiB). A partial-freezing depth's cached states would be "
            f"{grid['prefix_states_gib_per_depth']:.1f} GiB (float32, all reviews at 128 tokens). EXTRAPOLATED, not "
            f"measured: the whole grid ({ex['cells']} cells, {ex['runs']} runs) <= {ex['gpu_hours_upper_bound']:.1f} "
            f"GPU-hours ({ex['basis']})"]


def summary(run: dict) -> str:
    """The short table gpu_check.sh prints last."""
    gpu = run["gpu"]
    lines = [f"{gpu.get('gpu', '?')}  torch {gpu.get('torch', '?')}  tests: {run.get('tests', 'not run')}",
             f"{'side variant':34} {'samples/s':>9} {'MFU':>6} {'syncs':>6} {'1st ep s':>8}  path"]
    for row in variants(gpu):
        label = f"{row['side']} {row['variant']} b{row['batch']}"
        if "samples_s" not in row:
            lines.append(f"{label:34} not run: {(row.get('error') or row.get('skipped'))[:90]}")
            continue
        mfu = "-" if row.get("mfu") is None else f"{100 * row['mfu']:.1f}%"
        lines.append(f"{label:34} {row['samples_s']:9.0f} {mfu:>6} {_num(row.get('syncs'), 'd'):>6} "
                     f"{_num(row.get('first_epoch_s'), '.1f'):>8}  {row.get('path', '-')}")
    share = gpu.get("k_at_once") or {}
    for k, row in share.get("k", {}).items():
        lines.append(f"K={k}: {row['epochs_s']:.1f} head-only epochs/s, x{_num(row['speedup'], '.2f')}")
    grid = gpu.get("mlu_slice") or {}
    if "extrapolated_grid" in grid:
        lines.append(f"mlu grid: <= {grid['extrapolated_grid']['gpu_hours_upper_bound']:.1f} GPU-hours "
                     "(EXTRAPOLATED upper bound)")
    for stage, why in run.get("stages_not_run", {}).items():
        lines.append(f"{stage}: {why}")
    return "\n".join(lines)
