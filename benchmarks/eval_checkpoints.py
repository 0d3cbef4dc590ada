"""Validation projection PSNR of a training run's checkpoints (which epoch to ship).

    python benchmarks/eval_checkpoints.py --n 50 RUN/checkpoint_ep11.pt RUN/checkpoint_ep16.pt

Each checkpoint is exported as ``ship_prior.py --weights ema`` would (EMA generator, batch-norm
statistics re-estimated) into a temporary folder and projected (PGD, the engine's default
400-step budget) onto the first ``n`` faces of the held-out *validation* half. One JSON line each.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tune import val_faces  # noqa: E402

from mimic.engine import MimicConfig, solve  # noqa: E402
from mimic.io import save_json, to_tensor, to_uint8  # noqa: E402
from mimic.metrics import psnr, ssim  # noqa: E402
from mimic.priors import load_prior  # noqa: E402
from mimic.priors.train import export_prior  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("--n", type=int, default=50, help="validation faces (a multiple of 25)")
    args = ap.parse_args()
    if args.n % 25:
        ap.error("--n must be a multiple of 25")
    cu = val_faces(args.n)
    y = to_tensor(cu).reshape(args.n // 25, 25, 3, 64, 64)  # (S, B, C, H, W)
    for ck in args.ckpts:
        t = time.perf_counter()
        tmp = Path(tempfile.mkdtemp())
        try:
            conf = export_prior(ck, tmp, use_ema=True)
            save_json(tmp / "card.json", {})
            pr = load_prior(tmp)
            out = solve(pr.G, pr.D, y, MimicConfig(), method="pgd", generator=torch.Generator().manual_seed(0))
        finally:
            shutil.rmtree(tmp)
        x = to_uint8(out.x.reshape(-1, 3, 64, 64))
        print(json.dumps({"ckpt": ck, "epoch": conf["epochs"], "psnr_mean": round(float(psnr(x, cu).mean()), 3),
                          "ssim_mean": round(float(ssim(x, cu).mean()), 4),
                          "seconds": round(time.perf_counter() - t)}), flush=True)


if __name__ == "__main__":
    main()
