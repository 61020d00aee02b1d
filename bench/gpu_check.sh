#!/usr/bin/env bash
# bash bench/gpu_check.sh                    on a GPU machine, from the repository root (after bench/gpu_prepare.sh here)
# GPU_CHECK_DRY=1 bash bench/gpu_check.sh    on the CPU: every stage with a shrunken model and a few steps
#
# One command that checks and measures the GPU paths within a time budget (GPU_CHECK_BUDGET seconds, 420 by
# default: 7 minutes). Stages, in order; each runs under its own
# time limit and never into the time kept for the stages after it; one that would start with too little left
# is skipped, and the summary says so:
#   env      the card, versions, whether flash varlen attention runs, the matmul and copy ceilings
#   tests    pytest -m gpu tests/test_gpu.py (packed == padded on flash in bf16, no host sync in a step, compile)
#   harness  the harness's MFU variants (bench/gpu.py VARIANTS), one process
#   peer     the Trainer, default and length-grouped sampling, one process
#   share    K classifier-only trials at once on the one card against one (bench/gpu_share.py)
#   mlu      a slice of studies/mlu_ablation.toml at full scale, the whole grid extrapolated from it
# Results under $OUT (or .gpu/out): <card>_<date>.json (copy it into bench/gpu_runs/, then
# `python -m bench.report` redraws bench/RESULTS.md), summary.md and log.txt.
# The summary is rewritten after every stage, so a run cut short leaves what it finished. For a second call:
# GPU_CHECK_STAGES="harness share" runs only those stages (with their time limits), and
# GPU_CHECK_VARIANTS="bucketed+compile@256,padded+compile@256" only those harness variants.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DRY=${GPU_CHECK_DRY:-0}
OUT=${OUT:-$PWD/.gpu/out}
WORK=$(mktemp -d)
BUDGET=${GPU_CHECK_BUDGET:-420}
F=$( ((DRY)) && echo 8 || echo 1)  # a dry run's stages get 8 times the time: 2 CPU cores compile slowly
END=$(( $(date +%s) + BUDGET * F ))
LOG=$OUT/log.txt
mkdir -p "$OUT"
: > "$LOG"
export PYTHONUNBUFFERED=1 GPU_CHECK_DRY=$DRY TOKENIZERS_PARALLELISM=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if compgen -G ".whl/*.whl" > /dev/null; then  # packages the machine lacks, carried as wheels
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
CHECK=("$PY" -m bench.gpu_check --work "$WORK" --data .gpu/amazon_multidomain_8k.csv --model .gpu/tokenizer)

say() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

# stage NAME CAP KEEP NEED COMMAND...: run COMMAND for at most CAP seconds and never into the budget's last KEEP
# seconds (the later stages' share); skipped when that leaves under NEED seconds.
stage() {
  local name=$1 cap=$(($2 * F)) keep=$(($3 * F)) need=$(($4 * F)); shift 4
  if [[ " ${GPU_CHECK_STAGES:-env tests harness peer share mlu} " != *" $name "* ]]; then return; fi
  local left=$(( END - $(date +%s) - keep ))
  local limit=$(( left < cap ? left : cap ))
  if (( limit < need )); then
    say "$name: skipped, ${limit}s left for it, needs ${need}s"
    echo "skipped: ${limit}s left for it, needs ${need}s" > "$WORK/status_$name.txt"
  else
    say "$name: up to ${limit}s"
    GPU_CHECK_UNTIL=$(( $(date +%s) + limit - 5 )) timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    if (( rc == 0 )); then echo ok > "$WORK/status_$name.txt"
    elif (( rc == 124 )); then echo "stopped at its ${limit}s limit" > "$WORK/status_$name.txt"
    elif (( rc == 137 )); then echo "killed: past its ${limit}s limit, or out of memory" > "$WORK/status_$name.txt"
    else echo "failed: exit $rc (log.txt)" > "$WORK/status_$name.txt"; fi
    say "$name: $(cat "$WORK/status_$name.txt")"
  fi
  "${CHECK[@]}" summary --out "$OUT" --quiet >> "$LOG" 2>&1 || say "summary failed (log.txt)"
}

say "dry run: $DRY, budget ${BUDGET}s, out $OUT"
stage env      40  360  10 "${CHECK[@]}" env
stage tests   110  280  40 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider \
                             --junitxml "$WORK/tests.xml" -o junit_family=xunit1
stage harness 230  160  60 "${CHECK[@]}" harness
stage peer     50  120  30 "${CHECK[@]}" peer
stage share    80   40  45 "${CHECK[@]}" share
stage mlu     100    0  40 "${CHECK[@]}" mlu
"${CHECK[@]}" summary --out "$OUT"
rm -rf "$WORK"
