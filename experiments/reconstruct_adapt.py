"""Generator adaptation on Pajot et al.'s corruptions, blind, on validation faces (the bench reads the test faces):
the blind preset with and without keeping the observed pixels and the held-out-pixel stop (``adapt_check``).

    python experiments/reconstruct_adapt.py --corruptions patch_band,convolve_noise --n 25 \
        --variant '{"keep_observed": true}' --variant '{"keep_observed": true, "adapt_check": 0.1}' \
        --out runs/reconstruct_adapt_val.jsonl

One JSON line per (corruption, variant): the MSE on [-1, 1] and PSNR of the recoveries (means over the faces).
"""
import argparse
import json
import time

import torch

from mimic.api import recover
from mimic.bench.reconstruct import CORRUPTIONS
from mimic.bench.report_utils import validation_faces
from mimic.corruptions import get_corruption
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.priors import load_prior


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corruptions", default="patch_band,convolve_noise")
    ap.add_argument("--variant", action="append", default=None, help="JSON overrides of the blind preset")
    ap.add_argument("--method", default="mimic", choices=("mimic", "pgd"))
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pr = load_prior("celeba64")
    val, _ = validation_faces(args.n, args.offset)
    clean = to_tensor(val)
    for cname in args.corruptions.split(","):
        reg, kw = CORRUPTIONS[cname]
        y_u8 = to_uint8(get_corruption(reg, **kw)(clean, generator=torch.Generator().manual_seed(0)))
        for spec in args.variant or ["{}"]:
            t0 = time.time()
            ov = json.loads(spec)
            if args.method == "pgd":
                ov = {"fill": True, **ov}
            rec = recover(y_u8, task=None, method=args.method, prior=pr, device="cpu", seed=0, **ov).images
            mse = float(((to_tensor(rec) - clean) ** 2).mean())
            row = {"corruption": cname, "method": args.method, "variant": spec, "n": len(val), "mse": round(mse, 5),
                   "psnr": round(float(psnr(rec, val).mean()), 3), "seconds": round(time.time() - t0, 1)}
            print(json.dumps(row), flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
