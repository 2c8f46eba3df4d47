#!/usr/bin/env bash
# The Pong + Breakout Atari student (issue 6) in one device call of about 9 minutes, every final score with
# the nature protocol and FINAL_EPISODES episodes; the score table, logs and runs.tar (eval.json files and
# TensorBoard events) come back under $OUT/student (default ./gpu-results/student); the networks stay there.
# Experts: with PONG_EXPERT (default: results/gpu-h200-s11/pong/expert-best.pt, the 8-minute H200 expert,
# if present) only Breakout is trained (the pong-8min settings, EXPERT_MINUTES of learning, default 5);
# with PONG_EXPERT= (empty) both are trained at once (--parallel 2, EXPERT_MINUTES each, default 4).
# Then one student is distilled from the two (Actor-Mimic settings, LOSS, DISTILL_MINUTES).
#   [PONG_EXPERT=...] [EXPERT_MINUTES=5] [DISTILL_MINUTES=2.5] [FINAL_EPISODES=10] [LOSS=ce] bash scripts/gpu_student.sh
# As for gpu_checks.sh: `bash scripts/device_wheels.sh` here first, carry [".whl"] with the call.
set -uo pipefail
OUT=${OUT:-gpu-results}/student
RUN=$(mktemp -d)
DEFAULT_PONG=results/gpu-h200-s11/pong
PONG_EXPERT=${PONG_EXPERT-$([ -f "$DEFAULT_PONG/expert-best.pt" ] && echo "$DEFAULT_PONG/expert-best.pt")}
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
if [ -n "$PONG_EXPERT" ]; then
    EXPERT_MINUTES=${EXPERT_MINUTES:-5}
    trained=(--games Breakout)
    experts=(Pong="$PONG_EXPERT" Breakout="$RUN/experts/Breakout/expert-best.pt")
    tables=("$(dirname "$PONG_EXPERT")" "$RUN/experts")
else
    EXPERT_MINUTES=${EXPERT_MINUTES:-4}
    trained=(--games Pong Breakout --parallel 2)
    experts=("$RUN/experts")
    tables=("$RUN/experts")
fi
timeout "$(limit "$EXPERT_MINUTES" 90)" actormimic train-experts --config configs/experts/pong-8min.yaml \
    "${trained[@]}" --set "time_limit_minutes=$EXPERT_MINUTES" "${final[@]}" \
    --out "$RUN/experts" 2>&1 | tee "$OUT/experts.log"
timeout "$(limit "$DISTILL_MINUTES" 100)" actormimic distill --config configs/distill/actor-mimic-atari8.yaml \
    --experts "${experts[@]}" --games Pong Breakout --loss "$LOSS" --set num_envs=16 \
    --set "time_limit_minutes=$DISTILL_MINUTES" --set eval.interval=0 "${final[@]}" \
    --out "$RUN/student" 2>&1 | tee "$OUT/distill.log"
python scripts/score_table.py "${tables[@]}" "$RUN/student" --out "$OUT/scores"
# the eval.json files and TensorBoard events as one archive: a device call returns at most 8 files, 2 folders down
(cd "$RUN" && find . -name eval.json -o -name "events.out.tfevents*" | tar -cf "$OUT/runs.tar" -T -)
