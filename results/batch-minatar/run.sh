#!/usr/bin/env bash
# MinAtar at 64 envs: one batch-32 update per 4 agent steps against one batch-128 update per 16 (the same 8
# samples per agent step in a quarter of the updates, as `scripts/gpu_checks.sh batch128` times on a GPU).
# configs/experts/minatar.yaml for 500k agent steps, seeds 0-2, Breakout and SpaceInvaders; the two batch sizes
# of a game and seed side by side on the two cores, one torch thread each.
# From the repository root with actormimic installed: bash results/batch-minatar/run.sh OUT
set -euo pipefail
out=${1:-runs/batch-minatar}
run() {  # game seed batch updates_per_step
  actormimic train-experts --config configs/experts/minatar.yaml --games "MinAtar/$1" --steps 500000 --seed "$2" \
    --set num_envs=64 --set batch_size="$3" --set updates_per_step="$4" --set cpu_threads=1 --set log_interval=120 \
    --out "$out/b$3-$1-s$2" --overwrite > "$out-b$3-$1-s$2.log" 2>&1
}
mkdir -p "$out"
for seed in 0 1 2; do
  for game in Breakout SpaceInvaders; do
    run "$game" "$seed" 32 0.25 & run "$game" "$seed" 128 0.0625 & wait
  done
done
