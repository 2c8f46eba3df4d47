#!/usr/bin/env bash
# Seed 1 of the Pong + Breakout students (session 13): the students of ../run.sh with --seed 1, from the same two
# experts (the committed Breakout expert of ../run.sh's seed-0 run), 50 minutes of training each, side by side.
# From the repository root:
#   bash results/atari2-student-cpu/seed1/run.sh OUT
set -euo pipefail
out=$1
mkdir -p "$out"
student() {  # student LOSS
  actormimic distill --config configs/distill/actor-mimic-atari8.yaml --games Pong Breakout --loss "$1" \
    --temperature 1 --experts Pong=results/gpu-h200-s11/pong/expert-best.pt \
    Breakout=results/atari2-student-cpu/breakout-expert/expert-best.pt --set num_envs=8 --set cpu_threads=1 \
    --set time_limit_minutes=50 --set eval.interval=100000 --set eval.episodes=8 \
    --set eval.final_episodes=30 --set eval.num_envs=10 --seed 1 --out "$out/student-$1" >"$out/student-$1.log" 2>&1
}
student ce &
student cc &
wait
