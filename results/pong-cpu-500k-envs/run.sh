#!/usr/bin/env bash
# Pong's first 500k agent steps with configs/experts/pong-8min.yaml at 128 envs (seeds 0 and 1 side by side on the
# two cores, one torch thread each), to set against the 32-env fp32 runs of results/pong-cpu-500k-fp32-vs-bf16/
# (same config and overrides otherwise: epsilon reaches 0.01 at 240k steps as in the full 2.4M-step run,
# 8-episode evaluations every 100k steps, one batch-128 update per 16 agent steps as the config had then).
# From the repository root:
#   bash results/pong-cpu-500k-envs/run.sh OUT
set -euo pipefail
out=$1
for seed in 0 1; do
  actormimic train-experts --config configs/experts/pong-8min.yaml --steps 500000 --seed "$seed" \
    --set time_limit_minutes=0 --set epsilon_fraction=0.48 --set eval.interval=100000 --set eval.final_episodes=8 \
    --set eval.num_envs=8 --set cpu_threads=1 --set num_envs=128 --set updates_per_step=0.0625 --out "$out/pong-e128-s$seed" \
    >"$out/pong-e128-s$seed.log" 2>&1 &
done
wait
