#!/usr/bin/env bash
# Is the best periodic evaluation's network (expert-best.pt before the final choice) a good pick? For each expert
# run folder given, score its expert-best.pt and its last network (expert.pt) with 300 episodes at seed 101 (the
# pool that simulates final evaluations) and 300 at seed 777 (the reference), one torch thread, two at a time;
# then analyze.py. From the repository root with actormimic installed:
#   bash results/final-choice-minatar/run.sh OUT RUN_DIR/GAME ...
set -euo pipefail
out=$1
shift
mkdir -p "$out"
for folder in "$@"; do
  tag=$(echo "$folder" | tr '/' '_')
  for checkpoint in expert-best expert; do
    for seed in 777 101; do
      echo "$folder/$checkpoint.pt $seed $out/${tag}__${checkpoint}__$seed.json"
    done
  done
done | xargs -P 2 -L 1 bash -c 'OMP_NUM_THREADS=1 actormimic evaluate "$0" --episodes 300 --seed "$1" --out "$2" >/dev/null'
python results/final-choice-minatar/analyze.py "$out" --json results/final-choice-minatar/summary.json
