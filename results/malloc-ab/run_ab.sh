#!/bin/bash
# interleaved A/B: old (HEAD, glibc default malloc) vs new (working tree, freed memory kept)
cd /tmp/ab
for i in 4 5 6 7; do
  for v in old new; do
    src=/work/main; [ $v = old ] && src=/tmp/ab/old
    PYTHONPATH=$src perf stat -e page-faults -o /tmp/ab/$v-$i.perf /work/venv/bin/python $src/scripts/bench.py experts --game Breakout --seconds 45 --set double=false --set cpu_threads=2 --precisions fp32 --sb3-seconds 0 --json /tmp/ab/$v-$i.json > /dev/null 2>&1
    echo "$v $i $(python3 -c "import json;print(round(json.load(open('/tmp/ab/$v-$i.json'))['ours']['fp32']['steps_per_s'],1))") $(grep page-faults /tmp/ab/$v-$i.perf | awk '{print $1}')"
  done
done
