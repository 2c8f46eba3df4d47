#!/usr/bin/env bash
# The GPU checks in one call (for a session lent a CUDA machine; results under $OUT, default ./gpu-results).
#   bash scripts/gpu_checks.sh [CHECK ...]     (default: tests experts batch128 distill envs, ~7 minutes)
# Checks, each with its own time limit, everything logged to $OUT/log.txt:
#   tests    the CUDA-graph correctness tests and the replay tests (on the device)
#   experts  our expert trainer (fp32 at EXPERT_ENVS, default 64 and 128 envs, for BENCH_SECONDS, default 20)
#            against SB3's DQN on Breakout
#   batch128 the same at the same samples per agent step (8) in batch-128 updates, one per 16 agent steps, without
#            SB3 (its ratio uses the `experts` check's SB3 of the same call; on the session-11 H200 a loop iteration
#            took ~1 ms per batch-32 update it held: 17 ms for 16, 30.5 for 32). On MinAtar at 64 envs it learned
#            20-29% less per agent step at the same learning rate, about as much with twice that (README, "Batch 128
#            against batch 32"); `--set lr=...` belongs to learning runs, not to this throughput check
#   bf16     the same trainer in bf16 at 64 envs
#   threads  the 64-env fp32 trainer with one torch CPU thread (OMP_NUM_THREADS=1), to set against `experts`
#   profile  where one loop iteration's time goes (bench.py --profile): experts at 64 envs, distill 8 games
#   envs     the env layer alone stepped as each loop steps it (bench_env.py --loop: Breakout at 64 and 128 envs,
#            the 8 games at 16 envs each), the host's env ceiling, with each received batch left alone, copied by
#            torch (on its OpenMP threads; the loops did that until session 12) or by numpy (they do now)
#   pong     the first 1.75 minutes of configs/experts/pong-8min.yaml through the real CLI
#   distill  8-game distillation (16 envs per game) throughput and update time with ce and with cc
#   cc       the CC-vs-CE loss benchmark in a captured graph
# A lent machine lacks gymnasium/ale-py/SB3/MinAtar: run `bash scripts/device_wheels.sh` here first and
# carry .whl/ with the call (carry [".whl"]).
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1
source scripts/device_env.sh  # the wheels of scripts/device_wheels.sh, if carried as .whl/

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log everything, print the outcome
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name" >>"$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    echo "=== $name: rc=$rc, $((SECONDS - start)) s" | tee -a "$LOG"
}

check() {
    case $1 in
    tests) step tests 60 python -m pytest -q -p no:cacheprovider tests/test_graphs.py tests/test_replay.py ;;
    experts) step experts 170 python scripts/bench.py experts --game Breakout --seconds "${BENCH_SECONDS:-20}" \
        --num-envs ${EXPERT_ENVS:-64 128} \
        --precisions fp32 --json "$OUT/bench_experts.json" ;;
    batch128) step batch128 170 python scripts/bench.py experts --game Breakout --seconds "${BENCH_SECONDS:-20}" \
        --num-envs ${EXPERT_ENVS:-64 128} --precisions fp32 --set batch_size=128 --set updates_per_step=0.0625 \
        --sb3-seconds 0 --json "$OUT/bench_experts_b128.json" ;;
    bf16) step bf16 60 python scripts/bench.py experts --game Breakout --seconds 20 --num-envs 64 \
        --precisions bf16 --sb3-seconds 0 --json "$OUT/bench_experts_bf16.json" ;;
    threads) OMP_NUM_THREADS=1 step threads 60 python scripts/bench.py experts --game Breakout --seconds 20 \
        --num-envs 64 --precisions fp32 --sb3-seconds 0 --json "$OUT/bench_experts_1thread.json" ;;
    envs) step envs 100 python scripts/bench_env.py --seconds 0 --minatar-seconds 0 --loop 64:Breakout \
        128:Breakout 16:Atlantis,Boxing,Breakout,CrazyClimber,Enduro,Pong,Seaquest,SpaceInvaders \
        --loop-staging none torch numpy --loop-seconds 3 --json "$OUT/bench_envs.json" ;;
    profile)
        step profile_experts 90 python scripts/bench.py experts --game Breakout --seconds 60 --num-envs 64 \
            --precisions fp32 --sb3-seconds 0 --profile 50 --json "$OUT/profile_experts.json"
        step profile_distill 100 python scripts/bench.py distill --games Atlantis Boxing Breakout CrazyClimber \
            Enduro Pong Seaquest SpaceInvaders --seconds 60 --num-envs 8 --update-repeats 20 --profile 30 \
            --json "$OUT/profile_distill.json" ;;
    pong) step pong 150 actormimic train-experts --config configs/experts/pong-8min.yaml \
        --set time_limit_minutes=1.75 --set eval.final_episodes=4 --out "$(mktemp -d)" ;;
    distill) step distill 120 python scripts/bench.py distill --games Atlantis Boxing Breakout CrazyClimber \
        Enduro Pong Seaquest SpaceInvaders --seconds 20 --num-envs 16 --json "$OUT/bench_distill.json" ;;
    cc) step cc 35 python scripts/bench_cc.py --device cuda --cnn --json "$OUT/bench_cc.json" ;;
    *) echo "unknown check $1 (tests, experts, batch128, bf16, threads, profile, envs, distill, pong, cc)" | tee -a "$LOG" ;;
    esac
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee -a "$LOG"
python -c "import torch, gymnasium, ale_py, stable_baselines3, os; print('torch', torch.__version__, 'gymnasium', \
gymnasium.__version__, 'ale_py', ale_py.__version__, 'sb3', stable_baselines3.__version__, 'cpus', os.cpu_count())" \
    2>&1 | tee -a "$LOG"
for name in "${@:-tests experts batch128 distill envs}"; do
    for one in $name; do check "$one"; done
done
grep -E "passed|failed|Error|loop pattern|\"ratio|steps_per_s\"|cc_over|update_ms|_ms_per_iteration\"|\[eval|final eval" "$LOG" | tail -40
