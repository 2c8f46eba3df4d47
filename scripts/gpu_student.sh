#!/usr/bin/env bash
# The Pong + Breakout Atari student (issue 6) in one device call, every final score with the nature protocol and
# FINAL_EPISODES episodes; the score table, logs and runs.tar (eval.json files and TensorBoard events) come back
# under $OUT/student (default ./gpu-results/student); the networks stay there.
# Experts: PONG_EXPERT and BREAKOUT_EXPERT (defaults, if present: the committed 8-minute H200 Pong expert
# results/gpu-h200-s11/pong/expert-best.pt and 600k-step CPU Breakout expert
# results/atari2-student-cpu/breakout-expert/expert-best.pt). A game whose variable is empty (PONG_EXPERT=) is
# trained first with the pong-8min settings for EXPERT_MINUTES of learning (default 5 for one game; 4 each for
# two, --parallel 2). Then one student is distilled from the two (Actor-Mimic settings, LOSS, DISTILL_MINUTES).
# With both committed experts the call takes about DISTILL_MINUTES + 3 minutes; with one expert to train, ~9.
#   [PONG_EXPERT=...] [BREAKOUT_EXPERT=...] [EXPERT_MINUTES=5] [DISTILL_MINUTES=2.5] [FINAL_EPISODES=10] \
#     [LOSS=ce] bash scripts/gpu_student.sh
# As for gpu_checks.sh: `bash scripts/device_wheels.sh` here first, carry [".whl"] with the call.
set -uo pipefail
OUT=${OUT:-gpu-results}/student
RUN=$(mktemp -d)
committed() { [ -f "$1" ] && echo "$1"; }
PONG_EXPERT=${PONG_EXPERT-$(committed results/gpu-h200-s11/pong/expert-best.pt)}
BREAKOUT_EXPERT=${BREAKOUT_EXPERT-$(committed results/atari2-student-cpu/breakout-expert/expert-best.pt)}
DISTILL_MINUTES=${DISTILL_MINUTES:-2.5}
FINAL_EPISODES=${FINAL_EPISODES:-10}
LOSS=${LOSS:-ce}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
source scripts/device_env.sh  # the wheels of scripts/device_wheels.sh, if carried as .whl/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
final=(--set "eval.final_episodes=$FINAL_EPISODES" --set "eval.num_envs=$FINAL_EPISODES")
# the time limits cover learning only; the evaluations and start-up come on top (limits: +90 s experts, +100 s student)
limit() { python3 -c "print(int($1 * 60 + $2))"; }
trained=() experts=() tables=()
for game in Pong Breakout; do
    given=$([ $game = Pong ] && echo "$PONG_EXPERT" || echo "$BREAKOUT_EXPERT")
    if [ -n "$given" ]; then
        experts+=("$game=$given") tables+=("$(dirname "$given")")
    else
        trained+=("$game") experts+=("$game=$RUN/experts/$game/expert-best.pt")
    fi
done
if [ ${#trained[@]} -gt 0 ]; then
    EXPERT_MINUTES=${EXPERT_MINUTES:-$([ ${#trained[@]} = 1 ] && echo 5 || echo 4)}
    tables+=("$RUN/experts")
    timeout "$(limit "$EXPERT_MINUTES" 90)" actormimic train-experts --config configs/experts/pong-8min.yaml \
        --games "${trained[@]}" --parallel ${#trained[@]} --set "time_limit_minutes=$EXPERT_MINUTES" "${final[@]}" \
        --out "$RUN/experts" 2>&1 | tee "$OUT/experts.log"
fi
timeout "$(limit "$DISTILL_MINUTES" 100)" actormimic distill --config configs/distill/actor-mimic-atari8.yaml \
    --experts "${experts[@]}" --games Pong Breakout --loss "$LOSS" --set num_envs=16 \
    --set "time_limit_minutes=$DISTILL_MINUTES" --set eval.interval=0 "${final[@]}" \
    --out "$RUN/student" 2>&1 | tee "$OUT/distill.log"
python scripts/score_table.py "${tables[@]}" "$RUN/student" --out "$OUT/scores"
# the eval.json files and TensorBoard events as one archive: a device call returns at most 8 files, 2 folders down
(cd "$RUN" && find . -name eval.json -o -name "events.out.tfevents*" | tar -cf "$OUT/runs.tar" -T -)
