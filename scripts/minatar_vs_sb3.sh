#!/usr/bin/env bash
# Learning curves of our DQN trainer next to Stable-Baselines3's DQN on MinAtar, same network and
# hyperparameters (configs/experts/minatar.yaml; plain DQN on both sides, since SB3 has no Double DQN).
# Usage: scripts/minatar_vs_sb3.sh STEPS SEED OUTDIR   (all four runs in parallel, one thread each)
set -euo pipefail
steps=${1:-1000000}; seed=${2:-0}; out=${3:-runs/minatar-vs-sb3}
for game in Breakout SpaceInvaders; do
  actormimic train-experts --config configs/experts/minatar.yaml --games "MinAtar/$game" --steps "$steps" \
    --seed "$seed" --set double=false --set cpu_threads=1 --set log_interval=60 --out "$out/ours-$game-s$seed" --overwrite \
    > "$out-ours-$game-s$seed.log" 2>&1 &
  python scripts/sb3_peer.py --game "MinAtar/$game" --steps "$steps" --seed "$seed" \
    --config configs/experts/minatar.yaml --out "$out/sb3-$game-s$seed" --overwrite \
    > "$out-sb3-$game-s$seed.log" 2>&1 &
done
wait
python scripts/learning_curves.py "$out"/ours-Breakout-s"$seed"/MinAtar-Breakout "$out"/sb3-Breakout-s"$seed" \
  "$out"/ours-SpaceInvaders-s"$seed"/MinAtar-SpaceInvaders "$out"/sb3-SpaceInvaders-s"$seed" \
  --labels ours-dqn sb3-dqn ours-dqn sb3-dqn --out "$out/curves.png"
