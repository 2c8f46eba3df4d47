#!/usr/bin/env bash
# Is the best periodic evaluation's network (expert-best.pt before the final choice) a good pick? For each expert
# run folder given, score its expert-best.pt and its last network (expert.pt) with EPISODES (default 300) episodes
# at seed 101 (the pool that simulates final evaluations) and as many at seed 777 (the reference), one torch
# thread, two at a time, into OUT (then `python results/final-choice/analyze.py OUT ...`). From the repository
# root with actormimic installed:
#   [EPISODES=N] bash results/final-choice/run.sh OUT RUN_DIR/GAME ...
set -euo pipefail
out=$1
shift
mkdir -p "$out"
for folder in "$@"; do
  tag=$(echo "$folder" | tr '/' '_')
  for checkpoint in expert-best expert; do
    for seed in 777 101; do
      echo "$folder/$checkpoint.pt $seed ${EPISODES:-300} $out/${tag}__${checkpoint}__$seed.json"
    done
  done
done | xargs -P 2 -L 1 bash -c 'OMP_NUM_THREADS=1 actormimic evaluate "$0" --episodes "$2" --seed "$1" --out "$3" >/dev/null'
