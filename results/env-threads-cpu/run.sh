#!/usr/bin/env bash
# ALE worker threads per game (env_threads) on the 2-core CPU, idle machine (session 15). From the repository root:
#   bash results/env-threads-cpu/run.sh OUT
# 1) the env layer alone stepped as the loops step it, the default (one thread per env, at most one per core: 2 per
#    game here) against 1 per game; 2) two-game Atari distillation (random experts, bench.py distill) with
#    env_threads 0 and 1, two interleaved rounds, one torch thread.
set -euo pipefail
out=$1
mkdir -p "$out"
eight=Atlantis,Boxing,Breakout,CrazyClimber,Enduro,Pong,Seaquest,SpaceInvaders
python scripts/bench_env.py --seconds 0 --minatar-seconds 0 --loop 8:Pong,Breakout "16:$eight" 32:Breakout \
  --loop-threads 0 1 --loop-staging none --loop-seconds 16 --json "$out/env_loop.json"
for round in 1 2; do
  for threads in 0 1; do
    python scripts/bench.py distill --games Pong Breakout --num-envs 8 --seconds 40 --update-repeats 50 \
      --set cpu_threads=1 --set env_threads=$threads --json "$out/distill_threads${threads}_round${round}.json"
  done
done
