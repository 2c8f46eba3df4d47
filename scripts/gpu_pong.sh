#!/usr/bin/env bash
# The Pong-in-8-minutes check (issue 5) in one device call: trains configs/experts/pong-8min.yaml on the
# GPU and keeps the log, TensorBoard events, eval.json and expert-best.pt under $OUT (default
# ./gpu-results/pong).
# About 9.5 minutes: 8 of training, then the 30-episode final evaluation.
# Extra arguments go to train-experts (e.g. `--set num_envs=64`).
# As for gpu_checks.sh: `bash scripts/device_wheels.sh` here first, carry [".whl"] with the call.
set -uo pipefail
OUT=${OUT:-gpu-results}/pong
RUN=$(mktemp -d)/pong
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
source scripts/device_env.sh  # the wheels of scripts/device_wheels.sh, if carried as .whl/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
timeout 580 actormimic train-experts --config configs/experts/pong-8min.yaml --out "$RUN" "$@" 2>&1 | tee "$OUT/train.log"
cp -r "$RUN/Pong/tb" "$RUN/Pong/eval.json" "$RUN/Pong/expert-best.pt" "$OUT/" 2>/dev/null  # the expert (~7 MB) comes back for a later distillation
grep -E "\] eval|final eval" "$OUT/train.log" | tail -20
