"""``harness compare A B``: two folders on the same test set, cell by cell, B minus A.

The statistics by simulation (tests/sim.py): with no difference between the folders the
simultaneous intervals call any cell better or worse at most at the claimed rate, paired (shared
seed numbers) and unpaired (no seed in common), and they cover a true difference. The command on
copies of the fixed store: exact differences where B is A with known changes, and the refusals
(one line, exit 2, nothing written).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from harness.__main__ import main
from harness.records import decode_classes, encode_classes
from harness.report import compare

STORE = Path(__file__).parent / "fixtures" / "report_store"
ALPHA = 0.05
M = 4  # matched cells


def mc_se(rate: float, n: int) -> float:
    return math.sqrt(rate * (1 - rate) / n)


def folders(n: int, shift: float, paired: bool, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """n simulated pairs of folders (Ya, Yb), M cells each, 3 seeds; B's cells shifted by `shift` (latent)."""
    if paired:  # one simulation of 2M cells: both folders share each seed's effect
        design = sim.Design(shifts=np.r_[np.zeros(M), np.full(M, shift)])
        Y = sim.simulate(design, n, np.random.default_rng(seed)).astype(float)
        return [(y[:M], y[M:]) for y in Y], design
    design = sim.Design(shifts=np.zeros(M))
    rng = np.random.default_rng(seed)
    # the same test examples (one difficulty draw) but the seeds of each folder their own: simulate 2M cells
    # whose two halves get independent seed effects by drawing B's seeds in other columns
    wide = sim.Design(shifts=np.zeros(2 * M), seeds=6)
    Y = sim.simulate(wide, n, rng).astype(float)
    return [(y[:M, :3], y[M:, 3:]) for y in Y], design


@pytest.mark.parametrize("paired", [True, False], ids=["shared seeds", "no seed in common"])
def test_no_difference_is_rarely_called_better_or_worse(paired):
    n = 400
    pairs, design = folders(n, 0.0, paired, seed=21)
    called = []
    for ya, yb in pairs:
        table, _ = compare.contrast(ya, [1, 2, 3], yb, [1, 2, 3] if paired else [4, 5, 6], design.groups, ALPHA)
        called.append(bool(((table["lo_sim"] > 0) | (table["hi_sim"] < 0)).any()))
    rate = float(np.mean(called))
    print(f"\n{'paired' if paired else 'unpaired'}: any cell called better/worse in {rate:.3f} of {n} "
          f"(MC se at 0.05: {mc_se(ALPHA, n):.3f})")
    assert rate <= ALPHA + 3 * mc_se(ALPHA, n)


def test_paired_intervals_cover_a_true_difference():
    n = 300
    pairs, design = folders(n, 0.25, True, seed=22)
    truth = design.truth()[M:] - design.truth()[:M]
    inside, family = [], []
    for ya, yb in pairs:
        table, _ = compare.contrast(ya, [1, 2, 3], yb, [1, 2, 3], design.groups, ALPHA)
        inside.append(((table["lo"] < truth) & (truth < table["hi"])).to_numpy())
        family.append(bool(((table["lo_sim"] < truth) & (truth < table["hi_sim"])).all()))
    each, joint = float(np.mean(inside)), float(np.mean(family))
    print(f"\npaired, true difference {truth[0]:.3f}: own intervals cover {each:.3f}, simultaneous jointly {joint:.3f}")
    assert 0.93 <= each <= 0.985 and joint >= 0.93  # over-coverage is conservative, not an error


def test_the_paired_difference_is_the_difference_of_means_and_unpaired_matches_welch():
    pairs, design = folders(1, 0.2, True, seed=23)
    ya, yb = pairs[0]
    paired, how = compare.contrast(ya, [1, 2, 3], yb, [1, 2, 3], design.groups)
    assert "same seed number paired" in how
    np.testing.assert_allclose(paired["estimate"], yb.mean(axis=(1, 2)) - ya.mean(axis=(1, 2)), atol=1e-12)
    unpaired, how = compare.contrast(ya, [1, 2, 3], yb, [7, 8, 9], design.groups)
    assert "share no seed" in how and "Sidak" in how
    np.testing.assert_allclose(unpaired["estimate"], paired["estimate"], atol=1e-12)
    # the seed part of an unpaired difference is Welch's: each side's run variance over its runs
    a, b = ya[0].mean(axis=1), yb[0].mean(axis=1)
    assert unpaired["se_seed"][0] ** 2 == pytest.approx(a.var(ddof=1) / 3 + b.var(ddof=1) / 3, rel=1e-9)
    assert (unpaired["hi_sim"] - unpaired["lo_sim"] > unpaired["hi"] - unpaired["lo"]).all()


# ------------------------------------------------------------------------- the command

def copy_store(target: Path) -> Path:
    shutil.copytree(STORE, target)
    return target


def rewrite(folder: Path, change) -> None:
    lines = [json.loads(x) for x in (folder / "runs.jsonl").read_text().splitlines()]
    (folder / "runs.jsonl").write_text("".join(json.dumps(change(r) or r) + "\n" for r in lines))


def run_main(capsys, *args) -> tuple[int, list[str]]:
    code = main(["compare", *map(str, args)])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_b_that_fixes_k_examples_in_every_run_of_a_cell_is_k_over_n_better(tmp_path, capsys):
    a, b = copy_store(tmp_path / "a"), copy_store(tmp_path / "b")
    labels = decode_classes(json.loads((a / "splits.json").read_text())["test_labels"])
    cell = "n=128|ep=3|freeze=5"
    first = next(json.loads(x) for x in (a / "runs.jsonl").read_text().splitlines()
                 if json.loads(x)["cell"] == cell and json.loads(x)["role"] == "eval")
    wrong = np.flatnonzero(decode_classes(first["test"]["pred"]) != labels)[:7]

    def fix(r):
        if r["cell"] == cell and r["role"] == "eval" and r["test"].get("pred"):
            pred = decode_classes(r["test"]["pred"])
            r["test"]["pred"] = encode_classes(np.where(np.isin(np.arange(len(pred)), wrong), labels, pred))
        return r

    rewrite(b, fix)
    before = {p.name for p in a.iterdir()}
    code, lines = run_main(capsys, a, b, "--out", tmp_path / "out")
    assert code == 0 and lines[-1] == f"comparison: {tmp_path / 'out' / 'compare.md'}"
    table = pd.read_csv(tmp_path / "out" / "compare.csv").set_index("cell")
    runs = json.loads((a / "runs.jsonl").read_text().splitlines()[0])  # any record: the test set's size
    n = len(labels)
    gained = [np.sum(decode_classes(json.loads(x)["test"]["pred"])[wrong] != labels[wrong]) / n
              for x in (a / "runs.jsonl").read_text().splitlines()
              if json.loads(x)["cell"] == cell and json.loads(x)["role"] == "eval"
              and json.loads(x)["status"] == "ok"]
    assert runs and table.loc[cell, "estimate"] == pytest.approx(np.mean(gained), abs=1e-12)
    others = table.drop(index=cell)
    assert (others["estimate"].abs() < 1e-12).all() and len(table) == 7  # 8 cells, one with no kept run
    text = (tmp_path / "out" / "compare.md").read_text()
    assert text.startswith("## B against A, cell by cell") and "n=128 ep=3 freeze=5" in text
    assert {p.name for p in a.iterdir()} == before  # A is read, never written


def test_default_output_folder_is_inside_b(tmp_path, capsys):
    a, b = copy_store(tmp_path / "first"), copy_store(tmp_path / "second")
    code, _ = run_main(capsys, a, b)
    assert code == 0 and (b / "compare_first" / "compare.md").exists()


@pytest.mark.parametrize("case, parts", [
    ("test-set", ["its test set differs from", "other test labels", "compare needs the same test examples"]),
    ("no-runs", ["no runs.jsonl records (run the study first)"]),
    ("no-common-cell", ["no cell in common with", "cells are matched by id"]),
    ("no-manifest", ["no manifest.json"]),
])
def test_bad_folders_are_refused_in_one_line(tmp_path, case, parts):
    a, b = copy_store(tmp_path / "a"), copy_store(tmp_path / "b")
    if case == "test-set":
        splits = json.loads((b / "splits.json").read_text())
        splits["test_labels"] = ("1" if splits["test_labels"][0] == "0" else "0") + splits["test_labels"][1:]
        (b / "splits.json").write_text(json.dumps(splits))
    elif case == "no-runs":
        (b / "runs.jsonl").write_text("")
    elif case == "no-common-cell":
        rewrite(b, lambda r: r | {"cell": r["cell"].replace("ep=", "epochs=")})
    else:
        (b / "manifest.json").unlink()
    done = subprocess.run([sys.executable, "-m", "harness", "compare", str(a), str(b)], capture_output=True,
                          text=True, timeout=300)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for part in parts:
        assert part in lines[0]
    assert not list(b.glob("compare_*"))
