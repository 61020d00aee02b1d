"""python -m bench.search_budget [--trials 2,3,6] [--searches 3]: how many trials a search needs.

Runs the default study's lab grid (classifier only, SGD, every data size and both epoch budgets) once
per trial budget, each cell with several independent searches evaluated on the same seeds, and measures
with the grid model how much of a run's variance is the search's luck (between searches) against the
seeds' (between runs of one search). A budget is enough when the searches' share is below the seeds'.
Prints one JSON line per budget and a markdown table; results go to bench/search_budget/ (not committed).
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np

from harness import evidence
from harness.run.display import Display
from harness.run.runner import run_study
from harness.stats import grid_model
from harness.store import Results
from harness.study import axes_of, build, expand, Study

ROOT = Path(__file__).resolve().parents[1]


def lab_study(trials: int, searches: int, seeds: int) -> Study:
    """The default study's lab grid alone, with `searches` searches of `trials` trials and `seeds` seeds each."""
    raw = tomllib.loads((ROOT / "studies" / "default.toml").read_text())
    block = next(b for b in raw["grid"] if b["name"] == "lab")
    block["seeds"] = {"tune": [0], "evaluate": list(range(1, seeds + 1))}
    block["fixed"] |= {"search.trials": trials, "search.replicates": searches}
    raw["grid"] = [block]
    raw["name"] = f"search_budget_t{trials}"
    raw["analysis"].pop("labelling_study", None)
    return build(Study, raw, "search_budget", "")


def shares(results: Results, study: Study) -> dict:
    """Median over cells of the search variance and the seed variance of one run, and the searches' share."""
    ev = evidence.from_results(results, study)
    comp = grid_model.accuracy_components(ev.Y, ev.groups, replicates=ev.replicates, seeds=ev.seeds)
    seed = np.bincount(comp.sub_cell, comp.resid_var, minlength=len(comp.runs)) / np.maximum(comp.replicates, 1)
    search = comp.search_var
    ok = np.isfinite(search) & np.isfinite(seed)
    share = search[ok] / (search[ok] + seed[ok])
    return {"cells": int(ok.sum()), "median_search_sd": float(np.median(np.sqrt(search[ok]))),
            "median_seed_sd": float(np.median(np.sqrt(seed[ok]))), "median_search_share": float(np.median(share)),
            "cells_search_below_seed": int((search[ok] < seed[ok]).sum()), "untuned_cells": len(ev.untuned)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", default="2,3,6", help="trial budgets to measure, comma-separated")
    parser.add_argument("--searches", type=int, default=3, help="independent searches per cell")
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds per search")
    parser.add_argument("--out", default=str(ROOT / "bench" / "search_budget"), help="results folder root")
    args = parser.parse_args(argv)
    rows = []
    for trials in [int(t) for t in args.trials.split(",")]:
        study = lab_study(trials, args.searches, args.seeds)
        results = Results(Path(args.out) / study.name)
        started = time.perf_counter()
        run_study(study, "studies/default.toml (lab grid)", results, Display(enabled=False))
        row = {"trials": trials, "searches": args.searches, "seeds": args.seeds,
               "seconds": round(time.perf_counter() - started, 1), **shares(results, study)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| trials per search | median search sd | median seed sd | searches' share (median) | cells with search < seed |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['trials']} | {r['median_search_sd']:.4f} | {r['median_seed_sd']:.4f} | "
              f"{r['median_search_share']:.0%} | {r['cells_search_below_seed']} of {r['cells']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
