"""The stuck_pixels preset's robust weights: ``robust_stat="signed"``, ``robust_smooth=5``, ``robust_power=8``,
``robust=2``, and z started again once they are known (``robust_rewind``).

How well the robust weights find stuck_pixels' columns, and what a recovery gains from them, on validation faces
(never the test split), in groups of 25: a PGD recovery of the stuck_pixels observations, then the weights
``mimic.fidelity.group_robust_weights`` computes from its residual with the "abs" statistic (the group median of
|y - f(G(z))|) and the "signed" one (|the group median of y - f(G(z))|: the stuck columns carry one noise pattern
for the whole group, so their residual has the same sign in every image, while the prior's own errors change sign
from face to face): the mean weight over the stuck columns and elsewhere. Then PGD with the signed weights fixed,
restarted from z0, against PGD and the oracle (PGD with the columns known). Prints two markdown tables.

Reproduce (50 validation faces 200-249, CPU, a few minutes; expect the stuck columns' weight 0.48 with abs,
robust 1.5, and 0.01 with signed, smoothed 5x5, robust 2, power 8, the rest 0.99 with both; PGD 15.47 dB, PGD
with the signed weights from z0 17.14, the oracle 17.30):

    python experiments/robust_weights.py --n 50 --offset 200
"""
from __future__ import annotations

import argparse

import torch

from mimic.bench.report_utils import validation_faces
from mimic.corruptions import get_corruption
from mimic.engine import solve
from mimic.fidelity import group_robust_weights
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.priors import load_prior
from mimic.tasks import get_task


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="validation faces (a multiple of 25)")
    ap.add_argument("--offset", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.n % 25:
        ap.error("--n must be a multiple of 25")
    torch.set_num_threads(args.threads)
    faces, _ = validation_faces(args.n, args.offset)
    corr = get_corruption("stuck_pixels")
    y = corr(to_tensor(faces), generator=torch.Generator().manual_seed(0)).view(-1, 25, 3, 64, 64)  # (S, 25, C, H, W)
    pr = load_prior("celeba64", device="cpu")
    cfg = get_task("stuck_pixels").config  # its loss weights and schedule; PGD ignores the robust fields
    valid = torch.ones(y.shape[:2])

    def row(name, x):
        print(f"| {name} | {psnr(to_uint8(x.flatten(0, 1)), faces).mean():.2f} |", flush=True)

    print("| weights from PGD's residual | stuck columns | elsewhere |\n| --- | --- | --- |")
    pgd = solve(pr.G, pr.D, y, cfg, method="pgd")
    for label, kw in (("abs, robust 1.5", dict(robust=1.5, robust_stat="abs", robust_smooth=1, robust_power=4.0)),
                      ("signed, robust 2, smooth 5, power 8", dict(robust=2.0, robust_stat="signed", robust_smooth=5,
                                                                   robust_power=8.0))):
        w = group_robust_weights(y, pgd.x, valid, cfg.replace(**kw))  # (S, 1, C, H, W)
        print(f"| {label} | {w[..., :corr.col].mean():.3f} | {w[..., corr.col:].mean():.3f} |")
    print("\n| recovery | PSNR (dB) |\n| --- | --- |")
    row("PGD", pgd.x)
    row("oracle (columns known)", solve(pr.G, pr.D, y, cfg, method="pgd", weight=corr.known_mask(None, y[0])[None]).x)
    row("PGD with the signed weights, from z0", solve(pr.G, pr.D, y, cfg, method="pgd", weight=w).x)


if __name__ == "__main__":
    main()
