#!/bin/bash
# CE and CC students fitted offline (scripts/fidelity_offline.py) to the quickstart experts' states,
# over a grid of Adam learning rates; configs/distill/minatar.yaml otherwise (T = 0.1, batch 48).
# Usage: bash results/distill-lr-offline/run.sh OUT [EXPERTS] [SEEDS]  (two runs at a time, ~6 min per pair)
set -euo pipefail
out=${1:?usage: run.sh OUT [EXPERTS] [SEEDS]}
experts=${2:-results/quickstart-cpu/experts}
seeds=${3:-0}
mkdir -p "$out"
games='games=[MinAtar/Breakout, MinAtar/SpaceInvaders, MinAtar/Freeway]'
one() {
  python scripts/fidelity_offline.py --experts "$experts" --loss "$1" --seeds $seeds --set "$games" \
    --set "lr=$2" --out "$out/$1-lr$2.json" > "$out/$1-lr$2.log" 2>&1
}
for lr in 1.25e-4 5e-4 1e-3 2e-3; do
  one ce "$lr" & one cc "$lr" & wait
done
