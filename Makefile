# make install   - .venv with everything the harness, its tests and its benchmark need (every optional extra)
# make test      - the test suite without the long end-to-end tests (CPU, offline after the first install)
# make test-slow - the long end-to-end tests (marked slow; CI runs both)
# make ablation  - run studies/three_class.toml (the same sentences in three classes, ~2 minutes), then
#                  studies/default.toml, and write results/default/report.md, which compares the two
# make ablation STUDY=studies/X.toml ARGS="--set search.trials=8" - another study, more options
# make ablation WORKERS=N - the same with N local worker processes sharing the study (one GPU each);
#                  the storage is results/<study>/journal.log, or $HARNESS_STORAGE (e.g. postgresql://...)
# make report    - the report of STUDY again, from the store only
# make bench-scale - a 300,000-row review file through a tiny grid: wall time and peak memory
# make forecast-check - do learning-curve forecasts hold on data no fit has seen? studies/forecast_check.toml
#                  (movie-review snippets: curves fitted on up to 2,000 sentences, checked at 4,000 and 8,000),
#                  then the forecasts' errors and band coverage (harness.report.forecast_check)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STUDY  ?= studies/default.toml
WORKERS ?=
ARGS ?=
# the default study's report compares binary with three-class labels of the same test sentences;
# ARGS go to both studies
COMPANION = $(if $(filter studies/default.toml,$(STUDY)),studies/three_class.toml,)

.PHONY: install test test-slow ablation report forecast-check bench bench-scale clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,mlflow,dashboard,slurm]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

ablation: install
ifneq ($(COMPANION),)
	$(PY) -m harness run $(COMPANION) --no-report $(ARGS)
endif
ifeq ($(WORKERS),)
	$(PY) -m harness run $(STUDY) $(ARGS)
else
	$(PY) -m harness worker $(STUDY) --processes $(WORKERS) $(ARGS)
endif

report: install
	$(PY) -m harness.report results/$(basename $(notdir $(STUDY)))

forecast-check: install
	$(PY) -m harness run studies/forecast_check.toml --no-report $(ARGS)
	$(PY) -m harness.report.forecast_check results/forecast_check

clean:
	rm -rf $(VENV) .pytest_cache

# the benchmark against HF Trainer + Optuna (long: 49 min on a quiet 2-core machine, see README "Performance")
bench: install
	$(PY) -m bench --cells head-only,top-2,full

# a tiny grid on a generated 300,000-review, 56 MB file: wall time and peak memory of the whole run
# (reading, the audit, the frozen-prefix pass, training, the report; see README "At scale")
bench-scale: install
	$(PY) -m bench.scale
