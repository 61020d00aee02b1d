#!/usr/bin/env bash
# bash bench/gpu_prepare.sh    in the repository root, before copying the checkout to a GPU machine
#
# Fills .gpu/ (ignored through .git/info/exclude, so that it goes along only when asked for) with what
# bench/gpu_check.sh needs on a GPU machine without network access: the benchmark's review CSV (from
# GPU_CHECK_CSV, default the file beside this repository) and the bert-base-uncased tokenizer of the
# builtin model (its files only, not its 90 MB of weights: the check trains a randomly initialised model).
# Prints the folder to copy along and the command to run there.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DATA=${GPU_CHECK_CSV:-../shared/data/amazon_multidomain_8k.csv}

EXCLUDE=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
touch "$EXCLUDE"
grep -qxF "/.gpu/" "$EXCLUDE" || echo "/.gpu/" >> "$EXCLUDE"

mkdir -p .gpu
cp "$DATA" .gpu/amazon_multidomain_8k.csv
rm -rf .gpu/tokenizer .gpu/out
PYTHONPATH=$PWD "$PY" -c "
from transformers import AutoTokenizer
from harness.run.modeling import model_path
AutoTokenizer.from_pretrained(model_path('builtin:all-MiniLM-L6-v2')).save_pretrained('.gpu/tokenizer')"

size=$(du -sk .gpu | cut -f1)
echo "copy along: .gpu/ (${size} KiB) with the checkout"
echo "run there:  bash bench/gpu_check.sh   (about 7 minutes; results in \$OUT or .gpu/out)"
echo "afterwards: cp <results>/<card>_<date>.json bench/gpu_runs/ && python -m bench.report"
