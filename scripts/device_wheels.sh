#!/usr/bin/env bash
# Run here, where pip reaches PyPI: fetch into .whl/ the packages a lent GPU machine lacks (its python3
# is 3.12 with torch, numpy, matplotlib, tensorboard, PyYAML, pytest, but no gymnasium, ale-py, SB3 or
# MinAtar); about 4 MB. Then name ".whl" in the device call's carry: gpu_checks.sh and gpu_pong.sh
# install them through scripts/device_env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    gymnasium==1.4.0 ale-py==0.12.1 farama-notifications==0.0.6 stable-baselines3==2.9.2 minatar==1.0.15 pytz
ls -la .whl
