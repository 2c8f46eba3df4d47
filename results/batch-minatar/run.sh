#!/usr/bin/env bash
# MinAtar at 64 envs: one batch-32 update per 4 agent steps against one batch-128 update per 16 (the same 8
# samples per agent step in a quarter of the updates, as `scripts/gpu_checks.sh batch128` times on a GPU).
# configs/experts/minatar.yaml (Adam 2.5e-4) for 500k agent steps, seeds 0-2, Breakout and SpaceInvaders, one
# torch thread per run, two runs at a time.
#   bash results/batch-minatar/run.sh OUT         the two batch sizes of a game and seed side by side
#   bash results/batch-minatar/run.sh OUT lr      batch 128 with Adam 5e-4 (twice the config's), the two games side by side
# From the repository root with actormimic installed.
set -euo pipefail
out=${1:-runs/batch-minatar}
run() {  # game seed batch updates_per_step [extra overrides...]: the run folder is b<batch><tag>-<game>-s<seed>
  local game=$1 seed=$2 batch=$3 rate=$4 tag=${5:-}
  shift 5 || shift 4
  actormimic train-experts --config configs/experts/minatar.yaml --games "MinAtar/$game" --steps 500000 \
    --seed "$seed" --set num_envs=64 --set batch_size="$batch" --set updates_per_step="$rate" --set cpu_threads=1 \
    --set log_interval=120 "$@" --out "$out/b$batch$tag-$game-s$seed" --overwrite > "$out-b$batch$tag-$game-s$seed.log" 2>&1
}
mkdir -p "$out"
for seed in 0 1 2; do
  if [ "${2:-}" = lr ]; then
    run Breakout "$seed" 128 0.0625 lr2x --set lr=5e-4 & run SpaceInvaders "$seed" 128 0.0625 lr2x --set lr=5e-4 & wait
    continue
  fi
  for game in Breakout SpaceInvaders; do
    run "$game" "$seed" 32 0.25 & run "$game" "$seed" 128 0.0625 & wait
  done
done
