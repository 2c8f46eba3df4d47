#!/usr/bin/env bash
# MinAtar: does the env count change learning per agent step? num_envs 8 vs 32, 500k steps, 3 seeds, 2 games.
# Two runs at a time, one torch thread each.
cd /work/main && source /work/venv/bin/activate
run() {  # game seed envs
  actormimic train-experts --config configs/experts/minatar.yaml --games "MinAtar/$1" --steps 500000 --seed "$2" \
    --set num_envs="$3" --set cpu_threads=1 --set log_interval=120 --out "runs/s7/envs/e$3-$1-s$2" --overwrite \
    > "runs/s7/envs-e$3-$1-s$2.log" 2>&1
}
for seed in 0 1 2; do
  for game in Breakout SpaceInvaders; do
    run "$game" "$seed" 8 & run "$game" "$seed" 32 & wait
  done
done
echo done > runs/s7/envs.done
