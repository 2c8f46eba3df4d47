#!/bin/bash
# The interleaved A/B of results/ab_s14/summary.md: bench.py from the old tree (cf5faa7) and the new one in turn.
#   bash run_ab.sh OLD_TREE NEW_TREE PHASE     PHASE: experts-distill (pairs 1-2), distill (pairs 3-5), t1, t2
# (each tree a checkout with its own scripts/; the venv's python; results written next to this script)
OLD=$1 NEW=$2 PHASE=$3
OUT=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-python}
run() { local name=$1 dir=$2; shift 2
  (cd "$dir" && PYTHONPATH=$dir $PY scripts/bench.py "$@" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1); }
E="experts --game MinAtar/Breakout --seconds 40 --precisions fp32 --set double=false --sb3-seconds 0"
D="distill --games MinAtar/Breakout MinAtar/SpaceInvaders --seconds 30"
pair() { # name_prefix i first(old|new) args...: the two trees one after the other
  local prefix=$1 i=$2 first=$3; shift 3
  if [ "$first" = old ]; then run "${prefix}_old_$i" "$OLD" "$@"; run "${prefix}_new_$i" "$NEW" "$@"
  else run "${prefix}_new_$i" "$NEW" "$@"; run "${prefix}_old_$i" "$OLD" "$@"; fi
}
case $PHASE in
  experts-distill) pair experts 1 old $E; pair distill 1 new $D; pair experts 2 new $E; pair distill 2 old $D ;;
  distill) pair distill 3 old $D; pair distill 4 new $D; pair distill 5 old $D ;;
  t1) for i in 1 2 3; do pair t1 $i $([ $((i % 2)) = 1 ] && echo old || echo new) $D --set cpu_threads=1; done ;;
  t2) for i in 1 2; do pair t2 $i $([ $((i % 2)) = 1 ] && echo old || echo new) $D --set cpu_threads=2; done ;;
esac
