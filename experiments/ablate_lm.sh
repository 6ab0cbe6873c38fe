#!/usr/bin/env bash
# One fixed-budget LM ablation row (BENCHMARKS.md "Quality per CPU-minute"): trains runs/lm_NAME on a frozen
# tokenizer, then judges 128 test prompts (guidance 3, seed 0) into runs/lm_NAME/eval_test.json.
#
#   TOKENIZER=runs/tok_a OBJECTIVE=maskgit_frames experiments/ablate_lm.sh NAME 1200 [--config.key=value ...]
#
# Expect: with the defaults and a 2,400-step tiny tokenizer, ~16 % fully correct after 1,200 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; steps=$2; shift 2
tokenizer=${TOKENIZER:-runs/tok_a}
workdir=runs/lm_$name
start=$(date +%s)
nice -n 5 .venv/bin/python -m videogen.train --config experiments/lm_world.py:tiny --workdir "$workdir" \
  --config.tokenizer_workdir="$tokenizer" --config.objective="${OBJECTIVE:-maskgit_frames}" \
  --config.steps="$steps" --config.eval.every=100000 --config.ckpt_every="$steps" --config.quiet=True \
  --config.code_cache.num_clips=20000 "$@" > "$workdir.log" 2>&1
mid=$(date +%s)
nice -n 5 .venv/bin/videogen eval --workdir "$workdir" --splits test --num-clips 128 --no-fvd \
  --out "$workdir/eval_test.json" >> "$workdir.log" 2>&1
echo "$name train_s=$((mid - start)) eval_s=$(($(date +%s) - mid))" | tee -a runs/ablate_times.txt
