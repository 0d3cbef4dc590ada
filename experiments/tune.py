"""The tuning harness that chose the CelebA task presets: their learning rates, schedules and robust weights.

Every preset in ``mimic.tasks`` (surrogate and latent learning rates, the stylize schedule of 40 warm steps and 54
outer iterations of 25 surrogate and 10 latent steps, ``robust`` 2 / 1.5 in the occlusion and inpainting presets,
``clip`` in gray_blur, robust 1.5 with the signed statistic in the blind preset) was chosen with this script, on
the *validation* half of the held-out faces (never the test half that `mimic bench blind` reports). It corrupts
validation faces [offset, offset + n) with each task's corruption (seed 0) and prints one JSON line per task:
mean PSNR (dB, on [0, 1]) of the observation, of PGD, of the oracle (``--oracle``: PGD through the true
corruption) and of MimicGAN for each ``--variant`` (MimicConfig overrides on the task's preset, written as
keyword arguments: ``'T=36'``, ``"robust=1.5,robust_stat='signed'"``; ``''`` is the preset itself), with seconds.
A task may also be one of Pajot et al.'s corruptions of `mimic bench reconstruct` (recovered with the blind preset).

Reproduce the stylize schedule (54 outer iterations; faces 250-349, CPU, about 15 minutes; expect PGD 13.05 and
13.06, the preset 15.29, 36 iterations 15.02, 72 iterations 15.04):

    python experiments/tune.py --prior celeba64 --task stylize --n 100 --offset 250 --pgd '' --pgd 'T=36' \\
        --variant '' --variant 'T=36' --variant 'T=72'

Reproduce the blind preset's robust weights (faces 250-299; the preset, robust 1.5 signed, against no robust
weights and the abs statistic; expect the mean change over the six tasks +0.19 dB for the preset and +0.29 for abs,
and on gray_blur 17.06 / 17.25 / 16.74):

    python experiments/tune.py --prior celeba64 --task gray_blur --task stylize --task negative \\
        --task stuck_pixels --task occlusion --task inpainting --n 50 --offset 250 --preset blind \\
        --variant '' --variant 'robust=0.0' --variant "robust=1.5,robust_stat='abs'"

On a GPU add ``--device cuda`` (results differ from the CPU's by up to about 0.2 dB: GPU reductions are not
bit-reproducible). Deterministic on a CPU.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from mimic.api import recover
from mimic.bench.blind import oracle_recover
from mimic.bench.reconstruct import CORRUPTIONS as PAJOT
from mimic.bench.report_utils import parse_overrides, validation_faces
from mimic.corruptions import get_corruption
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.priors import load_prior
from mimic.tasks import get_task


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prior", required=True)
    ap.add_argument("--task", action="append", required=True)
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--pgd", action="append", default=[], help="PGD variant(s), like --variant (default: the preset)")
    ap.add_argument("--no-pgd", action="store_true")
    ap.add_argument("--preset", default=None,
                    help="recover the variants with this preset (e.g. blind) instead of the task's (PGD keeps the task's)")
    ap.add_argument("--oracle", action="store_true", help="also PGD through the true corruption (bench blind's oracle)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpc", type=int, default=None, help="groups per engine call (default: 1 on CPU, all on CUDA)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clean_u8, _ = validation_faces(args.n, args.offset)
    clean = to_tensor(clean_u8)
    pr = load_prior(args.prior, device=args.device)
    for task in args.task:
        label = task
        if task in PAJOT:  # Pajot et al.'s corruptions (bench reconstruct): recovered with the blind preset
            reg, kw = PAJOT[task]
            corr, task = get_corruption(reg, **kw), "blind"
        else:
            corr = get_corruption(get_task(task).corruption)
        y_u8 = to_uint8(corr(clean, generator=torch.Generator().manual_seed(0)))
        res = {"task": label, "observed": float(psnr(y_u8, clean_u8).mean())}
        for v in [] if args.no_pgd else args.pgd or [""]:
            t0 = time.time()
            r = recover(y_u8, task=task, method="pgd", prior=pr, device=args.device, groups_per_call=args.gpc,
                        **parse_overrides(v))
            key = f"pgd[{v}]" if v else "pgd"
            res[key], res[f"{key}_s"] = float(psnr(r.images, clean_u8).mean()), time.time() - t0
        if args.oracle:
            t0 = time.time()
            rec = oracle_recover(pr, task, y_u8, args.device, 25, 0)
            res["oracle"], res["oracle_s"] = float(psnr(rec, clean_u8).mean()), time.time() - t0
        for v in args.variant or [""]:
            t0 = time.time()
            r = recover(y_u8, task=args.preset or task, method="mimic", prior=pr, device=args.device,
                        groups_per_call=args.gpc, **parse_overrides(v))
            res[f"mimic[{v}]"], res[f"mimic[{v}]_s"] = float(psnr(r.images, clean_u8).mean()), time.time() - t0
            res[f"mimic[{v}]_obs"] = float(r.obs_loss.mean())
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
