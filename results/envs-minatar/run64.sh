#!/usr/bin/env bash
# As results/envs-minatar/run.sh with num_envs 64: both games of a seed side by side, one torch thread each.
cd /work/main && source /work/venv/bin/activate
run() {  # game seed envs
  actormimic train-experts --config configs/experts/minatar.yaml --games "MinAtar/$1" --steps 500000 --seed "$2" \
    --set num_envs="$3" --set cpu_threads=1 --set log_interval=120 --out "runs/s7/envs/e$3-$1-s$2" --overwrite \
    > "runs/s7/envs-e$3-$1-s$2.log" 2>&1
}
for seed in 0 1 2; do
  run Breakout "$seed" 64 & run SpaceInvaders "$seed" 64 & wait
done
echo done > runs/s7/envs64.done
