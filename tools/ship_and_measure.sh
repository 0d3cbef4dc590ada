#!/usr/bin/env bash
# Ship a trained CelebA prior and re-measure, with it, every CelebA figure the README reports (CPU; hours).
# Choose the checkpoint first: python -m tools.eval_checkpoints --n 50 RUN_DIR/checkpoint_ep*.pt
#   bash tools/ship_and_measure.sh CHECKPOINT
set -euo pipefail
CKPT=${1:?usage: tools/ship_and_measure.sh CHECKPOINT}
cd "$(dirname "$0")/.."
python -m tools.ship_prior --ckpt "$CKPT" --name celeba64
mimic prior-report celeba64 --n 200 --json benchmarks/results/prior_celeba64.json --write-card runs/card-celeba64
python -m tools.ship_prior --card runs/card-celeba64 --name celeba64
mimic bench blind --out benchmarks/results/blind --n 200 --device cpu
mimic bench reconstruct --out benchmarks/results/reconstruct --n 25 --dip-n 8 --dip-steps 1000 --device cpu
mimic bench shifted --out benchmarks/results/shifted --device cpu
mimic bench speed --out benchmarks/results/speed --groups 1,2 --device cpu
python -m tools.render_readme
