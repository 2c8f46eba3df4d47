#!/usr/bin/env bash
# Actor-Mimic transfer (section 5) on MinAtar, CPU: does a game learn faster from the torso of a student distilled
# from Breakout and SpaceInvaders experts than from a random initialisation? Asterix, which the student never saw
# (4 observation channels; the student takes 6 and zero-pads), and Breakout, which it learned (the control).
#   bash results/transfer-minatar/run.sh OUT   (about 40 minutes on the 2-core dev box; stages already in OUT are kept)
set -euo pipefail
OUT=${1:?usage: run.sh OUT}
EXPERTS=configs/experts/minatar.yaml
SOURCES=(MinAtar/Breakout MinAtar/SpaceInvaders)
# 1. source experts, 300k agent steps each, both at once (one core each)
[ -e "$OUT/experts" ] || actormimic train-experts --config $EXPERTS --games "${SOURCES[@]}" --steps 300000 \
    --parallel 2 --out "$OUT/experts"
# 2. a CE student of the two (the MinAtar distillation config, 150k agent steps per game)
[ -e "$OUT/student" ] || actormimic distill --config configs/distill/minatar.yaml --games "${SOURCES[@]}" \
    --experts "$OUT/experts" --loss ce --steps 150000 --set eval.final_episodes=30 --out "$OUT/student"
# 3. each target game for STEPS agent steps, 3 seeds, from the student's torso and from scratch, two runs at a time
#    with one torch thread each (folders <transfer|scratch>-<game>-s<seed>)
target() {  # GAME STEPS
    local game=$1 steps=$2 seed
    for seed in 0 1 2; do
        for start in transfer scratch; do
            [ -e "$OUT/$start-$game-s$seed" ] && continue
            actormimic train-experts --config $EXPERTS --games "MinAtar/$game" --steps "$steps" --seed $seed \
                $([ $start = transfer ] && echo --init-from "$OUT/student/student.pt") --set cpu_threads=1 \
                --set eval.interval=25000 --out "$OUT/$start-$game-s$seed" > "$OUT/$start-$game-s$seed.log" 2>&1 &
        done
        wait
    done
    python scripts/learning_curves.py "$OUT"/{transfer,scratch}-$game-s*/ \
        --labels transfer transfer transfer scratch scratch scratch --out "$OUT/curves-$game.png"
}
target Asterix 300000
target Breakout 150000
python results/transfer-minatar/summarize.py "$OUT"
