#!/usr/bin/env bash
# The GPU checks in one call (for a session lent a CUDA machine; results under $OUT, default ./gpu-results):
#   CUDA-graph correctness tests, the CC-vs-CE loss benchmark in a captured graph, replay sampling on
#   the device, our expert trainer (fp32 and bf16) against SB3's DQN on Breakout, and the 2-game
#   distillation throughput and update time with ce and cc. About 8 minutes on an H100.
# A lent machine lacks gymnasium/ale-py/SB3/MinAtar: run `bash scripts/device_wheels.sh` here first and
# carry .whl/ with the call (`bash scripts/gpu_checks.sh`, carry [".whl"]).
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
source scripts/device_env.sh  # the wheels of scripts/device_wheels.sh, if carried as .whl/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -m pytest -q tests/test_graphs.py tests/test_cc.py tests/test_agents.py 2>&1 | tee "$OUT/tests.txt"
python scripts/bench_cc.py --device cuda --cnn --json "$OUT/bench_cc.json" 2>&1 | tail -20
python scripts/bench_replay.py --device cuda --json "$OUT/bench_replay.json" 2>&1 | tail -10
timeout 240 python scripts/bench.py experts --game Breakout --seconds 40 --num-envs 16 \
    --json "$OUT/bench_experts.json" 2>&1 | tail -40
timeout 150 python scripts/bench.py distill --games Pong Breakout --seconds 30 --num-envs 16 \
    --json "$OUT/bench_distill.json" 2>&1 | tail -30
