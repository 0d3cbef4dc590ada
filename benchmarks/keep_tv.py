"""The keep_tv weight (docs/TUNING.md 31) on validation faces: box blur + Gaussian noise at several settings.

    python benchmarks/keep_tv.py --n 25 --offset 0

For each (l, sigma): MSE on [-1, 1] of the observation, of G(z) (blind preset, no keeping), of TV denoising of the
observation with weight k x its estimated noise sigma, and of G(z) plus the residual y - G(z) TV-denoised with
weight k x the residual's estimated sigma (what ``keep_observed`` does with ``keep_tv=k`` where no fill is found).
One recovery per setting; the weights are applied to its G(z).
"""
from __future__ import annotations

import argparse
import json

import torch

from mimic import recover
from mimic.corruptions import get_corruption
from mimic.engine import denoise_tv, noise_sigma
from mimic.io import to_tensor, to_uint8

from tune import val_faces


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--k", default="0.4,0.7,1.0", help="weights to compare, comma-separated")
    ap.add_argument("--settings", default="3:0.15,3:0.05,3:0.3,1:0.15,5:0.1", help="l:sigma pairs")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(2)
    clean_u8 = val_faces(args.n, args.offset)
    clean = to_tensor(clean_u8)
    mse = lambda a: float(((a.clamp(-1, 1) - clean) ** 2).mean())
    for s in args.settings.split(","):
        l, sigma = int(s.split(":")[0]), float(s.split(":")[1])
        y_u8 = to_uint8(get_corruption("convolve_noise", l=l, sigma=sigma)(clean, generator=torch.Generator().manual_seed(0)))
        y = to_tensor(y_u8)
        x = recover(y_u8, task=None, prior="celeba64", device=args.device, seed=0).tensor  # (N, 3, 64, 64) G(z)
        r = y - x
        res = {"l": l, "sigma": sigma, "sigma_hat_residual": float(noise_sigma(r).mean()), "observed": mse(y), "mimic": mse(x)}
        for k in (float(v) for v in args.k.split(",")):
            res[f"tv(y) k={k}"] = mse(denoise_tv(y, k * noise_sigma(y)))
            res[f"keep k={k}"] = mse(x + denoise_tv(r, k * noise_sigma(r)))
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in res.items()}), flush=True)


if __name__ == "__main__":
    main()
