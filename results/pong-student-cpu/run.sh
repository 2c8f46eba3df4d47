#!/usr/bin/env bash
# Pong students distilled on the 2-core CPU from the 8-minute H200 Pong expert (results/gpu-h200-s11/pong/),
# Actor-Mimic settings (configs/distill/actor-mimic-atari8.yaml: student acts with epsilon 0.1, batch 32, one update
# per 4 steps, Adam 1e-4, T on the teacher only), 8 envs, one torch thread, 60 minutes of training each, 8-episode
# evaluations every 100k steps and a 30-episode final one (nature protocol). In the measured runs the first ran
# beside an earlier cc run at T=1 (stopped after 9 minutes) for its first 9 minutes, then beside the other two.
# The cc run at T=1 was then repeated alone for 310k steps, about as many as the others made in their 60 minutes. From the repository root:
#   bash results/pong-student-cpu/run.sh OUT
set -euo pipefail
out=$1
run() {  # run NAME LOSS T
  actormimic distill --config configs/distill/actor-mimic-atari8.yaml \
    --experts Pong=results/gpu-h200-s11/pong/expert-best.pt --games Pong --loss "$2" --temperature "$3" \
    --set num_envs=8 --set time_limit_minutes=60 --set cpu_threads=1 --set eval.interval=100000 \
    --set eval.episodes=8 --set eval.final_episodes=30 --set eval.num_envs=10 --out "$out/$1" >"$out/$1.log" 2>&1
}
mkdir -p "$out"
run ce-T1 ce 1 &
run ce-T0.01 ce 0.01 &
run cc-T0.01 cc 0.01 &
wait
actormimic distill --config configs/distill/actor-mimic-atari8.yaml \
  --experts Pong=results/gpu-h200-s11/pong/expert-best.pt --games Pong --loss cc --temperature 1 --steps 310000 \
  --set num_envs=8 --set time_limit_minutes=0 --set cpu_threads=1 --set eval.interval=100000 \
  --set eval.episodes=8 --set eval.final_episodes=30 --set eval.num_envs=10 --out "$out/cc-T1" >"$out/cc-T1.log" 2>&1
python scripts/learning_curves.py "$out/ce-T1" "$out/cc-T1" "$out/ce-T0.01" "$out/cc-T0.01" --labels "ce, T=1" \
  "cc, T=1" "ce, T=0.01" "cc, T=0.01" --out "$out/curves.png"
