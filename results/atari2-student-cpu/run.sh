#!/usr/bin/env bash
# A 2-game Atari student (Pong + Breakout) on the 2-core CPU, with no GPU: the Pong expert is the 8-minute H200 expert
# (results/gpu-h200-s11/pong/), the Breakout expert is trained here on the CPU for up to 65 minutes (the pong-8min
# settings with one batch-128 update per 16 agent steps, epsilon 1 -> 0.01 over 150k steps); then two students side
# by side, ce and cc at T = 1 (Actor-Mimic settings: the student acts with epsilon 0.1, batch 32 mixed over the two
# games, one update per 4 steps, Adam 1e-4, T on the teacher only), 8 envs per game, one torch thread each,
# STUDENT_MINUTES of training (default 55), 8-episode evaluations every 100k steps and 30-episode final ones
# (nature protocol). From the repository root:
#   bash results/atari2-student-cpu/run.sh OUT
set -euo pipefail
out=$1
mkdir -p "$out"
actormimic train-experts --config configs/experts/pong-8min.yaml --games Breakout --steps 600000 \
  --set time_limit_minutes=65 --set updates_per_step=0.0625 --set epsilon_fraction=0.25 --set eval.interval=100000 \
  --set eval.episodes=8 --set eval.final_episodes=30 --set eval.num_envs=10 --out "$out/experts" >"$out/experts.log" 2>&1
student() {  # student LOSS
  actormimic distill --config configs/distill/actor-mimic-atari8.yaml --games Pong Breakout --loss "$1" \
    --temperature 1 --experts Pong=results/gpu-h200-s11/pong/expert-best.pt \
    Breakout="$out/experts/Breakout/expert-best.pt" --set num_envs=8 --set cpu_threads=1 \
    --set "time_limit_minutes=${STUDENT_MINUTES:-55}" --set eval.interval=100000 --set eval.episodes=8 \
    --set eval.final_episodes=30 --set eval.num_envs=10 --out "$out/student-$1" >"$out/student-$1.log" 2>&1
}
student ce &
student cc &
wait
python scripts/score_table.py results/gpu-h200-s11/pong "$out/experts" "$out/student-ce" "$out/student-cc" \
  --out "$out/scores"
