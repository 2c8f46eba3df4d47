#!/usr/bin/env bash
# Actor-Mimic transfer (section 5) on MinAtar, CPU: does a game learn faster from the torso of a student distilled
# from Breakout and SpaceInvaders experts than from a random initialisation? Asterix, which the student never saw
# (4 observation channels; the student takes 6 and zero-pads), and Breakout, which it learned (the control); then
# Asterix from the student's torso rescaled to a fresh torso's feature norm (rescale.py): scale or meaning?
#   bash results/transfer-minatar/run.sh OUT   (about 50 minutes on the 2-core dev box; runs already in OUT are kept)
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
[ -e "$OUT/student-rescaled-Asterix.pt" ] || python results/transfer-minatar/rescale.py "$OUT/student/student.pt" \
    MinAtar/Asterix "$OUT/student-rescaled-Asterix.pt"
# 3. a target game for STEPS agent steps, seeds 0-2, from each START (transfer: the student's torso; rescaled: the
#    rescaled one; scratch: random), two runs at a time with one torch thread each (folders <start>-<game>-s<seed>)
target() {  # GAME STEPS START...
    local game=$1 steps=$2 start seed jobs=0
    shift 2
    declare -A init=([transfer]="$OUT/student/student.pt" [rescaled]="$OUT/student-rescaled-$game.pt" [scratch]="")
    for seed in 0 1 2; do
        for start in "$@"; do
            [ -e "$OUT/$start-$game-s$seed" ] && continue
            actormimic train-experts --config $EXPERTS --games "MinAtar/$game" --steps "$steps" --seed $seed \
                ${init[$start]:+--init-from "${init[$start]}"} --set cpu_threads=1 --set eval.interval=25000 \
                --out "$OUT/$start-$game-s$seed" > "$OUT/$start-$game-s$seed.log" 2>&1 &
            if (( ++jobs % 2 == 0 )); then wait; fi
        done
    done
    wait
    local runs=() labels=() run
    for start in "$@"; do
        for run in "$OUT/$start-$game-s"*/; do runs+=("$run"); labels+=("$start"); done
    done
    python scripts/learning_curves.py "${runs[@]}" --labels "${labels[@]}" --out "$OUT/curves-$game.png"
}
target Asterix 300000 transfer scratch rescaled
target Breakout 150000 transfer scratch
python results/transfer-minatar/summarize.py "$OUT"
