#!/bin/bash
OUT=/work/main/results/ab_s14
PY=/work/venv/bin/python
run() { local name=$1 dir=$2; shift 2
  (cd $dir && PYTHONPATH=$dir $PY scripts/bench.py "$@" --json $OUT/$name.json > $OUT/$name.log 2>&1); }
D="distill --games MinAtar/Breakout MinAtar/SpaceInvaders --seconds 30 --set cpu_threads=1"
for i in 1 2 3; do
  if [ $((i % 2)) = 1 ]; then run t1_old_$i /tmp/old $D; run t1_new_$i /work/main $D
  else run t1_new_$i /work/main $D; run t1_old_$i /tmp/old $D; fi
done
echo done > $OUT/DONE3
