#!/usr/bin/env bash
# The GPU checks in one call (for a session lent a CUDA machine; results under $OUT, default ./gpu-results).
#   bash scripts/gpu_checks.sh [CHECK ...]     (default: tests experts update batch128 distill envs, ~8 minutes)
# Checks, each with its own time limit, everything logged to $OUT/log.txt:
#   tests    the CUDA-graph correctness tests and the replay tests (on the device)
#   experts  our expert trainer (fp32 at EXPERT_ENVS, default 64 and 128 envs, for BENCH_SECONDS, default 20)
#            against SB3's DQN on Breakout; bench.py runs plain DQN (double=false) like SB3's (the session-11 H200
#            numbers were Double DQN, then bench.py's default: one more forward per update)
#   batch128 the same at the same samples per agent step (8) in batch-128 updates, one per 16 agent steps, without
#            SB3 (its ratio uses the `experts` check's SB3 of the same call; on the session-11 H200 a loop iteration
#            took ~1 ms per batch-32 update it held: 17 ms for 16, 30.5 for 32). On MinAtar at 64 envs it learned
#            20-29% less per agent step at the same learning rate, about as much with twice that (README, "Batch 128
#            against batch 32"); `--set lr=...` belongs to learning runs, not to this throughput check
#   update   the DQN update alone, batch 32 and 128 (the compiled form: 32), 16 per CUDA graph, as the trainer
#            builds it, as plain DQN (what the trainer checks run) and in candidate forms (cuDNN autotuning, TF32 matrix products, Double DQN's online forwards
#            merged, the three forwards on parallel streams, the TD loss through torch.compile), each with its
#            drift from the default's loss and gradient norm: what would lift the ~1 ms per batch-32 update that
#            capped the session-11 loop
#   bf16     the same trainer in bf16 at 64 envs
#   threads  the 64-env fp32 trainer with one torch CPU thread (OMP_NUM_THREADS=1), to set against `experts`
#   profile  where one loop iteration's time goes (bench.py --profile): experts at 64 envs, distill 8 games
#   envs     the env layer alone stepped as each loop steps it (bench_env.py --loop: Breakout at 64 envs, the 8
#            games at 16 envs each; making 128 ALE envs takes ~20 s on the dev box), the host's env ceiling, with
#            each received batch left alone or copied by numpy as the loops do; then the 8 games with 2 and 1 ALE
#            threads per game (env_threads) instead of 16 each (by default one per env up to one per core: 8 x 16
#            threads on 16 cores)
#   distill-threads  the 8-game distillation of `distill` with env_threads=2 (16 ALE threads in all)
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

EIGHT=Atlantis,Boxing,Breakout,CrazyClimber,Enduro,Pong,Seaquest,SpaceInvaders  # the seed paper's games

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
    update)
        step update 80 python scripts/bench_update_variants.py --variants default plain cudnn-benchmark tf32 merged-online \
            parallel --batch 32 128 --count 16 --seconds 1 --json "$OUT/bench_update_variants.json"
        step update_compiled 60 python scripts/bench_update_variants.py --variants default compiled --batch 32 \
            --count 16 --seconds 1 --json "$OUT/bench_update_compiled.json" ;;
    bf16) step bf16 60 python scripts/bench.py experts --game Breakout --seconds 20 --num-envs 64 \
        --precisions bf16 --sb3-seconds 0 --json "$OUT/bench_experts_bf16.json" ;;
    threads) OMP_NUM_THREADS=1 step threads 60 python scripts/bench.py experts --game Breakout --seconds 20 \
        --num-envs 64 --precisions fp32 --sb3-seconds 0 --json "$OUT/bench_experts_1thread.json" ;;
    envs)
        step envs 90 python scripts/bench_env.py --seconds 0 --minatar-seconds 0 --loop 64:Breakout "16:$EIGHT" \
            --loop-staging none numpy --loop-seconds 3 --json "$OUT/bench_envs.json"
        step envs_threads 75 python scripts/bench_env.py --seconds 0 --minatar-seconds 0 --loop "16:$EIGHT" \
            --loop-threads 2 1 --loop-staging numpy --loop-seconds 3 --json "$OUT/bench_envs_threads.json" ;;
    profile)
        step profile_experts 90 python scripts/bench.py experts --game Breakout --seconds 60 --num-envs 64 \
            --precisions fp32 --sb3-seconds 0 --profile 50 --json "$OUT/profile_experts.json"
        step profile_distill 100 python scripts/bench.py distill --games ${EIGHT//,/ } --seconds 60 --num-envs 8 \
            --update-repeats 20 --profile 30 --json "$OUT/profile_distill.json" ;;
    pong) step pong 150 actormimic train-experts --config configs/experts/pong-8min.yaml \
        --set time_limit_minutes=1.75 --set eval.final_episodes=4 --out "$(mktemp -d)" ;;
    distill) step distill 120 python scripts/bench.py distill --games ${EIGHT//,/ } --seconds 20 --num-envs 16 \
        --json "$OUT/bench_distill.json" ;;
    distill-threads) step distill_threads 120 python scripts/bench.py distill --games ${EIGHT//,/ } --seconds 20 \
        --num-envs 16 --set env_threads=2 --json "$OUT/bench_distill_threads.json" ;;
    cc) step cc 35 python scripts/bench_cc.py --device cuda --cnn --json "$OUT/bench_cc.json" ;;
    *) echo "unknown check $1 (tests, experts, update, batch128, bf16, threads, profile, envs, distill, distill-threads," \
        "pong, cc)" | tee -a "$LOG" ;;
    esac
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee -a "$LOG"
python -c "import torch, gymnasium, ale_py, stable_baselines3, os; print('torch', torch.__version__, 'gymnasium', \
gymnasium.__version__, 'ale_py', ale_py.__version__, 'sb3', stable_baselines3.__version__, 'cpus', os.cpu_count())" \
    2>&1 | tee -a "$LOG"
for name in "${@:-tests experts update batch128 distill envs}"; do
    for one in $name; do check "$one"; done
done
grep -E "passed|failed|Error|loop pattern|\"ratio|steps_per_s\"|cc_over|update_ms|_ms_per_iteration\"|\] eval|final eval|^ +[a-z-]+ +[0-9]+ +16 " \
    "$LOG" | tail -60
