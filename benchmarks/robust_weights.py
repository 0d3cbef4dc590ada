"""How well the robust weights find stuck_pixels' columns, and what the recovery gains from them (docs/TUNING.md 18).

    python benchmarks/robust_weights.py --n 50 --offset 200

On validation faces (never the test split): a PGD recovery of the stuck_pixels observations (groups of 25), then the
weights the engine would compute from its residual with the "abs" and "signed" statistics (mean weight over the stuck
columns and elsewhere), then PGD with the signed weights fixed, restarted from z0 or continued from PGD's own z,
against the oracle (PGD with the columns known).
"""
from __future__ import annotations

import argparse

import torch

from mimic.corruptions import get_corruption
from mimic.engine import group_robust_weights, solve
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.priors import load_prior
from mimic.tasks import get_task

from tune import val_faces


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50, help="validation faces (a multiple of 25)")
    ap.add_argument("--offset", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    faces = val_faces(args.n, args.offset)
    corr = get_corruption("stuck_pixels")
    y = corr(to_tensor(faces), generator=torch.Generator().manual_seed(0)).view(-1, 25, 3, 64, 64)  # (S, 25, C, H, W)
    pr = load_prior("celeba64", device="cpu")
    cfg = get_task("stuck_pixels").config  # its loss weights and schedule; PGD ignores the robust fields
    valid = torch.ones(y.shape[:2])

    def run(name, w=None, z=None):
        o = solve(pr.G, pr.D, y, cfg, method="pgd", weight=w, _z_start=z)
        print(f"| {name} | {psnr(to_uint8(o.x.flatten(0, 1)), faces).mean():.2f} |", flush=True)
        return o

    print("| weights from PGD's residual | stuck columns | elsewhere |\n| --- | --- | --- |")
    pgd = solve(pr.G, pr.D, y, cfg, method="pgd")
    for label, kw in (("abs, robust 1.5", dict(robust=1.5, robust_stat="abs", robust_smooth=1, robust_power=4.0)),
                      ("signed, robust 2, smooth 5, power 8", dict(robust=2.0, robust_stat="signed", robust_smooth=5,
                                                                   robust_power=8.0))):
        w = group_robust_weights(y, pgd.x, valid, cfg.replace(**kw))  # (S, 1, C, H, W)
        print(f"| {label} | {w[..., :corr.col].mean():.3f} | {w[..., corr.col:].mean():.3f} |")
    print("\n| recovery | PSNR (dB) |\n| --- | --- |")
    print(f"| PGD | {psnr(to_uint8(pgd.x.flatten(0, 1)), faces).mean():.2f} |")
    run("oracle (columns known)", corr.known_mask(None, y[0])[None])
    run("PGD with the signed weights, from z0", w)
    run("PGD with the signed weights, from PGD's z", w, pgd.z)


if __name__ == "__main__":
    main()
