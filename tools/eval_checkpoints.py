"""Validation projection PSNR of a training run's checkpoints (which epoch to ship).

    python -m tools.eval_checkpoints --n 50 RUN/checkpoint_ep11.pt RUN/checkpoint_ep16.pt

Each checkpoint is exported as ``python -m tools.ship_prior --weights ema`` would (EMA generator, batch-norm
statistics re-estimated) into a temporary folder and projected (PGD, the engine's default
400-step budget) onto the first ``n`` faces of the held-out *validation* half. One JSON line each.
"""
from __future__ import annotations

import argparse
import json
import time

from mimic.priors.report import checkpoint_val_projection


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("--n", type=int, default=50, help="validation faces (a multiple of 25)")
    args = ap.parse_args()
    if args.n % 25:
        ap.error("--n must be a multiple of 25")
    for ck in args.ckpts:
        t = time.perf_counter()
        r = checkpoint_val_projection(ck, use_ema=True, n=args.n)
        print(json.dumps({"ckpt": ck, "epoch": r["epoch"], "psnr_mean": round(r["psnr_mean"], 3),
                          "ssim_mean": round(r["ssim_mean"], 4), "seconds": round(time.perf_counter() - t)}), flush=True)


if __name__ == "__main__":
    main()
