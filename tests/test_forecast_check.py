"""harness.report.forecast_check on one learning curve (tests/toy.py curve_store): the rows are the
forecast module's holdout, the summary counts them, bad input is one line."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from harness.report import forecast_check
from harness.report.frames import read_stored
from harness.stats import forecast
from toy import curve_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return curve_store(tmp_path_factory.mktemp("check") / "curve")


def test_each_larger_size_is_forecast_from_the_smaller_ones(store, capsys):
    assert forecast_check.main([str(store), "--fit-upto", "400"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(store / "tables" / "forecast_check.csv")
    assert table["size"].tolist() == [800, 1600, 3200, 6400] and table["ratio"].tolist() == [2.0, 4.0, 8.0, 16.0]
    # the same numbers as the forecast module's holdout on the stored runs (without the test part: close)
    stored = read_stored(store)
    runs = pd.DataFrame([{"data_size": r.axes["data_size"], "seed": r.seed, "accuracy": r.test["accuracy"]}
                         for r in stored.evals])
    seeds_only = forecast.holdout(runs, 400)
    assert table["predicted"].to_numpy() == pytest.approx(seeds_only["predicted"].to_numpy(), abs=1e-9)
    assert table["observed"].to_numpy() == pytest.approx(seeds_only["observed"].to_numpy(), abs=1e-9)
    assert ((table["hi"] - table["lo"]) > (seeds_only["hi"] - seeds_only["lo"])).all()  # the test part widens
    inside = int(table["inside"].sum())
    assert f"Band coverage: {inside} of 4 observed means inside their 95% bands" in printed
    assert f"mean absolute {table['error'].abs().mean():.3f}" in printed
    assert re.search(r"ep=3 freeze=all\s+3,200\s+8\.0x", printed)


def test_too_few_sizes_to_fit_says_why(store, capsys):
    assert forecast_check.main([str(store), "--fit-upto", "100"]) == 0
    assert "No forecast could be checked: ep=3 freeze=all: 2 size(s) up to 100 (50, 100): a curve needs 4." \
        in capsys.readouterr().out


def test_a_folder_without_a_study_is_a_one_line_error(tmp_path, capsys):
    assert forecast_check.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no manifest.json" in err and "\n" not in err
