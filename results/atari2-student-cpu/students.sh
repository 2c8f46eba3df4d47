#!/usr/bin/env bash
# More seeds of the Pong + Breakout students (sessions 13 and 15): the students of run.sh with --seed SEED, from the
# same two experts (the committed Breakout expert of run.sh's seed-0 run), 50 minutes of training each, side by side.
# From the repository root (seed 1 is in seed1/, seed 2 in seed2/):
#   bash results/atari2-student-cpu/students.sh OUT SEED
set -euo pipefail
out=$1
seed=$2
mkdir -p "$out"
student() {  # student LOSS
  actormimic distill --config configs/distill/actor-mimic-atari8.yaml --games Pong Breakout --loss "$1" \
    --temperature 1 --experts Pong=results/gpu-h200-s11/pong/expert-best.pt \
    Breakout=results/atari2-student-cpu/breakout-expert/expert-best.pt --set num_envs=8 --set cpu_threads=1 \
    --set time_limit_minutes=50 --set eval.interval=100000 --set eval.episodes=8 \
    --set eval.final_episodes=30 --set eval.num_envs=10 --seed "$seed" --out "$out/student-$1" >"$out/student-$1.log" 2>&1
}
student ce &
student cc &
wait
