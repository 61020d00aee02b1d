"""python -m harness.report.forecast_check RESULTS [--fit-upto N]: do the learning-curve forecasts hold?

Every curve of the study (each combination of the axes other than data size) is fitted, as the
report fits it, on its sizes up to N only, and forecasts each larger size the study also ran; the
check prints each forecast's error against the observed mean and whether that mean fell in the
forecast's band (the band for the mean of as many fresh runs, with the test set's sampling and
the floor of the largest fitted cell's interval: harness.stats.forecast.holdout), then the mean
error and the band's coverage over every (curve, size) checked. studies/forecast_check.toml is the
study it is made for (`make forecast-check`). Writes RESULTS/tables/forecast_check.csv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.evidence import from_records
from harness.report.frames import Stored, read_stored, run_frame
from harness.report.lab import test_set
from harness.stats import forecast

FIT_UPTO = 2000  # training sentences: the largest size a checked curve is fitted on


def check(stored: Stored, fit_upto: float = FIT_UPTO) -> pd.DataFrame:
    """One row per (curve, held-out size): holdout's columns with the curve's name; curves with fewer
    than forecast.MIN_SIZES sizes up to `fit_upto` give one row with the reason instead."""
    ev = from_records(stored.records, stored.splits, stored.axes)
    runs = run_frame(stored)
    pool = stored.splits.get("train_pool")
    kept = runs[runs["flag"].isna() & runs["accuracy"].notna()].copy()
    if kept.empty:
        raise HarnessError(f"{stored.results.dir}: no kept evaluation run to check a forecast with")
    kept["data_size"] = [pool if s == "all" else int(s) for s in kept["data_size"]]
    others = [x for x in stored.axes if x.column != "data_size"]
    frames = []
    for combo, part in kept.groupby([x.column for x in others], sort=False):
        combo = combo if isinstance(combo, tuple) else (combo,)
        name = " ".join(f"{x.short}={v}" for x, v in zip(others, combo))
        frame = part[["data_size", "seed", "accuracy"]]
        try:
            table = forecast.holdout(frame, fit_upto, level=1 - stored.analysis.alpha, test=test_set(ev, part))
        except ValueError as exc:
            table = pd.DataFrame({"why": [str(exc)]})
        fitted = forecast.points(frame[frame["data_size"] <= fit_upto])
        frames.append(table.assign(curve=name, warnings="; ".join(forecast.check(fitted))))
    return pd.concat(frames, ignore_index=True)


def summary(table: pd.DataFrame) -> str:
    checked = table.dropna(subset=["predicted"]) if "predicted" in table else table.iloc[:0]
    if checked.empty:
        return "No forecast could be checked: " + "; ".join(f"{r.curve}: {r.why}" for r in table.itertuples()) + "."
    inside = int(checked["inside"].sum())
    worst = checked.loc[checked["error"].abs().idxmax()]
    return (f"Forecast error (forecast minus observed): mean {checked['error'].mean():+.3f}, mean absolute "
            f"{checked['error'].abs().mean():.3f}, largest {worst['error']:+.3f} ({worst['curve']} at "
            f"{int(worst['size']):,}, {worst['ratio']:.1f}x the largest size fitted). Band coverage: {inside} of "
            f"{len(checked)} observed means inside their 95% bands ({inside / len(checked):.0%}).")


def lines(table: pd.DataFrame, fit_upto: float) -> list[str]:
    out = [f"Curves fitted on the sizes up to {fit_upto:,.0f}; each larger size forecast and compared with its "
           "observed mean (band: the mean of as many fresh runs, seeds and test set):", "",
           f"{'curve':<24} {'size':>7} {'reach':>6} {'observed':>9} {'forecast [band]':>26} {'error':>7}  inside"]
    for r in table.itertuples():
        if "predicted" not in table or np.isnan(getattr(r, "predicted", np.nan)):
            out.append(f"{r.curve:<24} not checked: {r.why}")
            continue
        out.append(f"{r.curve:<24} {int(r.size):>7,} {r.ratio:>5.1f}x {r.observed:>9.3f} "
                   f"{f'{r.predicted:.3f} [{r.lo:.3f}, {r.hi:.3f}]':>26} {r.error:>+7.3f}  {'yes' if r.inside else 'no'}")
    out.append("")
    warned = table.drop_duplicates("curve")
    out += [f"{r.curve}: {r.warnings}" for r in warned.itertuples() if r.warnings]
    return out + ["", summary(table)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report.forecast_check",
                                     description="Check a study's learning-curve forecasts against the sizes it ran "
                                                 "beyond those fitted.")
    parser.add_argument("results", help="a study's results directory, e.g. results/forecast_check")
    parser.add_argument("--fit-upto", type=float, default=FIT_UPTO, metavar="N",
                        help=f"fit each curve on the data sizes up to N (default {FIT_UPTO})")
    args = parser.parse_args(argv)
    try:
        stored = read_stored(Path(args.results))
        table = check(stored, args.fit_upto)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    stored.results.tables.mkdir(parents=True, exist_ok=True)
    table.to_csv(stored.results.tables / "forecast_check.csv", index=False)
    print("\n".join(lines(table, args.fit_upto)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
