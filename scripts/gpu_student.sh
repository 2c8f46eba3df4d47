#!/usr/bin/env bash
# The Pong + Breakout Atari student (issue 6) in one device call of about 9 minutes: experts for both games
# trained at once by train-experts (--parallel 2, the pong-8min settings, EXPERT_MINUTES of learning each),
# then one student distilled from them (Actor-Mimic settings, LOSS, DISTILL_MINUTES), every final score with
# the nature protocol and FINAL_EPISODES episodes. The score table, logs, eval.json files and TensorBoard
# events come back under $OUT/student (default ./gpu-results/student); the networks stay on the machine.
#   [EXPERT_MINUTES=4] [DISTILL_MINUTES=2.5] [FINAL_EPISODES=10] [LOSS=ce] bash scripts/gpu_student.sh
# As for gpu_checks.sh: `bash scripts/device_wheels.sh` here first, carry [".whl"] with the call.
set -uo pipefail
OUT=${OUT:-gpu-results}/student
RUN=$(mktemp -d)
EXPERT_MINUTES=${EXPERT_MINUTES:-4}
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
timeout "$(limit "$EXPERT_MINUTES" 90)" actormimic train-experts --config configs/experts/pong-8min.yaml \
    --games Pong Breakout --parallel 2 --set "time_limit_minutes=$EXPERT_MINUTES" "${final[@]}" \
    --out "$RUN/experts" 2>&1 | tee "$OUT/experts.log"
timeout "$(limit "$DISTILL_MINUTES" 100)" actormimic distill --config configs/distill/actor-mimic-atari8.yaml \
    --experts "$RUN/experts" --games Pong Breakout --loss "$LOSS" --set num_envs=16 \
    --set "time_limit_minutes=$DISTILL_MINUTES" --set eval.interval=0 "${final[@]}" \
    --out "$RUN/student" 2>&1 | tee "$OUT/distill.log"
python scripts/score_table.py "$RUN/experts" "$RUN/student" --out "$OUT/scores" 2>&1 | tee "$OUT/table.log"
(cd "$RUN" && find . -name eval.json -o -name "events.out.tfevents*" | tar -cf - -T -) | tar -xf - -C "$OUT"
