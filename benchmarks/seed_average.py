"""Averaging independent recoveries: does the mean of the G(z) of several seeds beat one seed? (docs/TUNING.md Open)

    python benchmarks/seed_average.py --task stylize --n 100 --offset 250 --seeds 2

Validation faces (``tune.val_faces``), the task's corruption (seed 0) and preset; prints, after each seed, that
seed's mean PSNR and the PSNR of the mean of the recoveries so far (float [-1, 1] outputs, clamped).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from mimic import recover
from mimic.corruptions import get_corruption
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr

from tune import val_faces


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--offset", type=int, default=250)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(2)
    clean = to_tensor(val_faces(args.n, args.offset))
    y = to_uint8(get_corruption(args.task)(clean, generator=torch.Generator().manual_seed(0)))
    outs = []
    for s in range(args.seeds):
        outs.append(recover(y, task=args.task, prior="celeba64", device=args.device, seed=s).tensor)  # (N, 3, 64, 64)
        mean = torch.stack(outs).mean(0)  # (k, N, 3, 64, 64) -> (N, 3, 64, 64)
        print(json.dumps({"seed": s, "psnr": round(float(np.mean(psnr(outs[-1], clean))), 3),
                          f"psnr_mean_of_{len(outs)}": round(float(np.mean(psnr(mean, clean))), 3)}), flush=True)


if __name__ == "__main__":
    main()
