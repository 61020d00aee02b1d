"""python -m bench.calibrate_cost RESULTS: fit the cost model's constants to a study's measured seconds.

The adaptive seeds weigh variance against cost, and must make the same choice on any machine, so
they price a run with a fixed model (harness.stats.cost.run_seconds) instead of its measured seconds.
This script fits that model's constants once, on runs measured on a quiet reference machine: it
rebuilds each evaluation run's work (steps, parameter-positions) from the study's data and model,
fits seconds per epoch by non-negative least squares, and prints the constants and how well they
predict (the constants are then written into harness/stats/cost.py by hand).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from harness.data import load_dataset
from harness.run.modeling import compute_params, encoder_parts, freeze_, load_classifier, resolve_depth, tokenize, top_of
from harness.stats.cost import RATES, run_seconds
from harness.study import build, Study


def work_of(runs: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Each run's one-epoch work, rebuilt as harness.run.execute.work counts it."""
    data = load_dataset(study.data)
    enc = tokenize(study.model.name, data.texts, study.model.max_length)
    net = load_classifier(study.model.name, data.n_classes, 0)
    n_blocks = len(encoder_parts(net)[2])
    params = {}
    rows = []
    for r in runs.itertuples():
        depth = resolve_depth(r.freeze if r.freeze == "all" else int(r.freeze), net)
        if depth not in params:
            model = load_classifier(study.model.name, data.n_classes, 0)
            freeze_(model, depth)
            params[depth] = compute_params(top_of(model, depth) if depth else model, depth)
        size = r.data_size if r.data_size == "all" else int(r.data_size)
        train, val = data.rows(size, int(r.seed))
        positions = np.ones(len(enc.lengths)) if depth == n_blocks else enc.lengths
        rows.append({"batches": math.ceil(len(train) / int(r.batch_size)),
                     "train": float(positions[train].sum()) * params[depth] / 1e6,
                     "val": float(positions[val].sum()) * params[depth] / 1e6})
    return pd.DataFrame(rows, index=runs.index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a results folder or a copied report (manifest.json, tables/runs.csv)")
    args = parser.parse_args(argv)
    folder = Path(args.results)
    study = build(Study, json.loads((folder / "manifest.json").read_text())["study"], "manifest", "")
    runs = pd.read_csv(folder / "tables" / "runs.csv", dtype={"data_size": str, "freeze": str})
    runs = runs[runs["trained"] & runs["seconds"].notna() & (runs["stopped_epoch"] > 0)]
    work = work_of(runs, study)
    per_epoch = runs["seconds"] / runs["stopped_epoch"]
    X = work[["batches", "train", "val"]].to_numpy()
    weights = 1 / per_epoch.to_numpy()  # relative error: cheap and dear runs count alike
    rates, _ = nnls(X * weights[:, None], per_epoch.to_numpy() * weights)
    fitted = X @ rates
    error = np.abs(fitted / per_epoch.to_numpy() - 1)
    print(json.dumps({"rates": dict(zip(["batches", "train", "val"], rates.round(8).tolist())),
                      "runs": len(runs), "median_abs_relative_error": round(float(np.median(error)), 3),
                      "p90_abs_relative_error": round(float(np.quantile(error, 0.9)), 3),
                      "in_use": RATES}, indent=2))
    check = [run_seconds(int(e), **w) for e, w in zip(runs["stopped_epoch"], work.to_dict("records"))]
    print(f"total measured {runs['seconds'].sum():.0f} s, modelled with the rates in use {sum(check):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
