"""The blind preset's group term (``lam_group``): its weight, on validation faces and the tuning half of
`mimic bench unseen` only (the held-out half is never looked at here), with clean faces as the control.

    python experiments/group_term.py --variant '{"method": "pgd"}' --variant '{}' --variant '{"lam_group": 0.03}' \
        --variant '{"lam_group": 0.3}' --out runs/group_term.jsonl

Decision: ``lam_group`` 0.03 in the blind preset (docs/DEFAULTS.md#blind). Each variant runs the six groups of 25
validation faces (faces 0-24: clean, gamma 2.2, sepia 1.0 and 0.5, the camera pipeline and shot noise at their
strong levels) in one solve and prints a JSON line of mean PSNR per group; ``{}`` is the blind preset with the group
term off (``lam_group`` 0), ``{"method": "pgd"}`` PGD.
"""
import argparse
import json
import time

import numpy as np
import torch

from mimic.bench.report_utils import validation_faces
from mimic.bench.unseen import damage
from mimic.engine import solve
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.priors import load_prior
from mimic.tasks import get_task

KINDS = [("clean", None), ("gamma", 1), ("sepia", 1), ("sepia", 0), ("camera", 1), ("shot_noise", 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", action="append", required=True, help="JSON overrides of the blind preset")
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pr = load_prior("celeba64")
    val, _ = validation_faces(25, args.offset)
    x = to_tensor(val)
    ys = torch.stack([x if k == "clean" else to_tensor(damage(k, x, lv)) for k, lv in KINDS])  # (6, 25, 3, 64, 64)
    for spec in args.variant:
        over = {"lam_group": 0.0, **json.loads(spec)}
        method = over.pop("method", "mimic")
        cfg = get_task("blind").config.replace(**over)
        t = time.time()
        o = solve(pr.G, pr.D, ys, cfg, method=method, stats=pr.group_stats, generator=torch.Generator().manual_seed(0))
        rows = {f"{k}{'' if lv is None else lv}": float(psnr(to_uint8(o.x[i]), val).mean())
                for i, (k, lv) in enumerate(KINDS)}
        rec = {"variant": spec, "method": method, "psnr": rows, "seconds": time.time() - t}
        print(json.dumps(rec), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
