#!/usr/bin/env bash
# MinAtar: does the env count change learning per agent step? configs/experts/minatar.yaml for 500k agent steps,
# seeds 0-2, Breakout and SpaceInvaders, with 8, 32 and 64 envs; two runs at a time, one torch thread each.
# Phase 1 runs 8 and 32 envs of a game side by side; phase 2 (added later) the two games' 64-env runs.
# From the repository root with actormimic installed: bash results/envs-minatar/run.sh OUT
set -euo pipefail
out=${1:-runs/envs-minatar}
run() {  # game seed envs
  actormimic train-experts --config configs/experts/minatar.yaml --games "MinAtar/$1" --steps 500000 --seed "$2" \
    --set num_envs="$3" --set cpu_threads=1 --set log_interval=120 --out "$out/e$3-$1-s$2" --overwrite \
    > "$out-e$3-$1-s$2.log" 2>&1
}
mkdir -p "$out"
for seed in 0 1 2; do
  for game in Breakout SpaceInvaders; do
    run "$game" "$seed" 8 & run "$game" "$seed" 32 & wait
  done
done
for seed in 0 1 2; do
  run Breakout "$seed" 64 & run SpaceInvaders "$seed" 64 & wait
done
