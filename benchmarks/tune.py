"""Tuning harness on the VALIDATION split (never the test split).

    python benchmarks/tune.py --prior DIR --task gray_blur --n 25 --variant 'T=5' --variant 'surrogate="paper"'

Prints mean PSNR of the observation, PGD, and each MimicGAN variant.
"""
from __future__ import annotations

import argparse
import ast
import json
import time

import numpy as np
import torch

from mimic.api import recover
from mimic.bench.reconstruct import CORRUPTIONS as PAJOT
from mimic.corruptions import get_corruption
from mimic.data import default_data_root, list_images, load_image_folder, split_files
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.tasks import get_task


def val_faces(n: int, offset: int = 0) -> np.ndarray:
    root = default_data_root() / "celeba"
    split = split_files(list_images(root), holdout=1000)
    return load_image_folder(split.val[offset : offset + n])


def parse_variant(s: str) -> dict:
    """``"lr_s=1e-2,inits=('identity',)"`` -> ``{"lr_s": 0.01, "inits": ("identity",)}`` (values are Python literals)."""
    call = ast.parse(f"f({s})", mode="eval").body  # keyword arguments of a call: commas inside values are fine
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def main():
    ap = argparse.ArgumentParser()
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
    clean_u8 = val_faces(args.n, args.offset)
    clean = to_tensor(clean_u8)
    rows = []
    for task in args.task:
        label = task
        if task in PAJOT:  # Pajot et al.'s corruptions (bench reconstruct): recovered with the blind preset
            reg, kw = PAJOT[task]
            corr, task = get_corruption(reg, **kw), "blind"
        else:
            corr = get_corruption(get_task(task).corruption)
        y = corr(clean, generator=torch.Generator().manual_seed(0))
        y_u8 = to_uint8(y)
        res = {"task": label, "observed": float(psnr(y_u8, clean_u8).mean())}
        for v in [] if args.no_pgd else args.pgd or [""]:
            t0 = time.time()
            r = recover(y_u8, task=task, method="pgd", prior=args.prior, device=args.device, groups_per_call=args.gpc,
                        **parse_variant(v))
            key = f"pgd[{v}]" if v else "pgd"
            res[key] = float(psnr(r.images, clean_u8).mean())
            res[f"{key}_s"] = time.time() - t0
        if args.oracle:
            from mimic.bench.blind import _oracle
            from mimic.priors import load_prior

            t0 = time.time()
            rec = _oracle(load_prior(args.prior, device=args.device), task, y_u8, args.device, 25, 0)
            res["oracle"], res["oracle_s"] = float(psnr(rec, clean_u8).mean()), time.time() - t0
        for v in args.variant or [""]:
            t0 = time.time()
            r = recover(y_u8, task=args.preset or task, method="mimic", prior=args.prior, device=args.device,
                        groups_per_call=args.gpc, **parse_variant(v))
            res[f"mimic[{v}]"] = float(psnr(r.images, clean_u8).mean())
            res[f"mimic[{v}]_s"] = time.time() - t0
            res[f"mimic[{v}]_obs"] = float(r.obs_loss.mean())
        print(json.dumps(res), flush=True)
        rows.append(res)


if __name__ == "__main__":
    main()
