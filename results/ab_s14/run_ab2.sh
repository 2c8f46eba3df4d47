#!/bin/bash
OUT=/work/main/results/ab_s14
PY=/work/venv/bin/python
run() { local name=$1 dir=$2; shift 2
  (cd $dir && PYTHONPATH=$dir $PY scripts/bench.py "$@" --json $OUT/$name.json > $OUT/$name.log 2>&1); }
D="distill --games MinAtar/Breakout MinAtar/SpaceInvaders --seconds 30"
run distill_old_3 /tmp/old $D
run distill_new_3 /work/main $D
run distill_new_4 /work/main $D
run distill_old_4 /tmp/old $D
run distill_old_5 /tmp/old $D
run distill_new_5 /work/main $D
echo done > $OUT/DONE2
