#!/usr/bin/env bash
# bash bench/gpu_prepare.sh    here, in the repository root, before a GPU call
#
# Fills .gpu/ (ignored through .git/info/exclude, so that it travels only when a call carries it) with what
# bench/gpu_check.sh needs and the GPU machine lacks: the benchmark's review CSV (../shared does not travel)
# and the bert-base-uncased tokenizer of the builtin model (its files only: the 90 MB of weights stay here).
# Every Python package the check imports is on the GPU machine already, so no .whl/ folder is needed.
# Prints the call to make.
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
from harness.modeling import model_path
AutoTokenizer.from_pretrained(model_path('builtin:all-MiniLM-L6-v2')).save_pretrained('.gpu/tokenizer')"

carried=$(du -sk .gpu | cut -f1)
tree=$(git ls-files -z -co --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "carry: [\".gpu\"]   (.gpu ${carried} KiB + working tree ${tree} KiB; the limit is 65536 KiB)"
echo "device call: run(command=\"bash bench/gpu_check.sh\", carry=[\".gpu\"], timeout_s=480)"
echo "afterwards:  cp <files_at>/<card>_<date>.json bench/gpu_runs/ && python -m bench.report"
