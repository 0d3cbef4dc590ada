#!/usr/bin/env bash
# The exact sequence that produced the shipped prior's figures and the README's results.
#   bash benchmarks/ship_and_measure.sh RUN_DIR [N_FACES]
set -euo pipefail
RUN=${1:?usage: ship_and_measure.sh RUN_DIR [N_FACES]}
N=${2:-25}
cd "$(dirname "$0")/.."
python benchmarks/ship_prior.py --ckpt "$RUN/checkpoint.pt" --name celeba64
mimic prior-report celeba64 --n 200 --json benchmarks/results/prior_celeba64.json
mimic bench blind --out benchmarks/results/blind --n "$N"
mimic bench speed --out benchmarks/results/speed
python benchmarks/render_readme.py
