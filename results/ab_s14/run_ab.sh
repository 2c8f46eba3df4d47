#!/bin/bash
# interleaved A/B of the old (cf5faa7) and new code on the CPU: MinAtar experts and MinAtar 2-game distillation
OUT=/work/main/results/ab_s14
PY=/work/venv/bin/python
run() { # name dir args...
  local name=$1 dir=$2; shift 2
  (cd $dir && PYTHONPATH=$dir $PY scripts/bench.py "$@" --json $OUT/$name.json > $OUT/$name.log 2>&1)
}
E="experts --game MinAtar/Breakout --seconds 40 --precisions fp32 --set double=false --sb3-seconds 0"
D="distill --games MinAtar/Breakout MinAtar/SpaceInvaders --seconds 30"
run experts_old_1 /tmp/old $E
run experts_new_1 /work/main $E
run distill_new_1 /work/main $D
run distill_old_1 /tmp/old $D
run experts_new_2 /work/main $E
run experts_old_2 /tmp/old $E
run distill_old_2 /tmp/old $D
run distill_new_2 /work/main $D
echo done > $OUT/DONE
