"""Generator adaptation (``adapt_steps``, ``lr_adapt``): how far recoveries move past the prior's
range, per method, on validation faces only (the six paper tasks, the tuning half of `mimic bench unseen`, clean
faces as the control; the held-out kinds and the test faces are never read here).

    python experiments/adapt.py --methods blind --n 16 --steps 300 --out runs/adapt_blind.jsonl --save runs/adapt_npz \
        --cases clean,paper,unseen:gamma:0,unseen:sepia:0,unseen:jpeg:0,unseen:motion_blur:0,unseen:shot_noise:0,unseen:downsample:0

One JSON line per (method, case, variant): PSNR of the observation, of the recovery before the adaptation and after
each quarter of it (``adapt_steps`` x 1/4 .. 4/4), and the seconds. ``--variant`` takes JSON overrides of the
method's preset (e.g. ``'{"lr_adapt": 3e-4}'``); the default is the preset plus ``adapt_steps``.
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from mimic.bench.blind import PAPER_TASKS
from mimic.bench.report_utils import validation_faces
from mimic.bench.unseen import DAMAGES, damage
from mimic.corruptions import get_corruption
from mimic.engine import solve
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.priors import load_prior
from mimic.tasks import get_task

CASES = {"paper": [f"task:{t}" for t in PAPER_TASKS],
         "tune": [f"unseen:{k}:{lv}" for k, d in DAMAGES.items() if d.half == "tune" for lv in (0, 1)],
         "clean": ["clean"]}


def observe(case: str, x: torch.Tensor, seed: int = 0):
    """(observation tensor (1, B, C_obs, H, W), oracle solve kwargs or None, the task preset's name or None)."""
    if case == "clean":
        return x[None], {"operator": lambda v: v}, None
    kind, name, *lv = case.split(":")
    if kind == "task":
        corr = get_corruption(get_task(name).corruption)
        y = corr(x, generator=torch.Generator().manual_seed(seed))
        y = to_tensor(to_uint8(y))  # as saved
        mask = corr.known_mask(None, y)
        if mask is not None:
            oracle = {"weight": mask[None]}
        else:
            gen = torch.Generator().manual_seed(seed)
            oracle = {"operator": lambda v: corr(v, generator=gen)}
        return y[None], oracle, name
    d, level = DAMAGES[name], int(lv[0])
    y = to_tensor(damage(name, x, level, seed=seed))
    oracle = None if d.operator is None else {"operator": lambda v: d.operator(v, level)}
    return y[None], oracle, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="blind,oracle", help="of: pgd, blind, mimic (the task's preset), oracle")
    ap.add_argument("--cases", default="paper", help="comma list of: paper, tune, clean, or single cases "
                                                     "(task:NAME, unseen:KIND:LEVEL)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--variant", action="append", default=None, help="JSON overrides of the method's preset")
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--save", default=None, help="a folder for y, the clean faces, x and f(x) per case (npz)")
    args = ap.parse_args()
    pr = load_prior("celeba64")
    val, _ = validation_faces(args.n, args.offset)
    x = to_tensor(val)
    cases = [c for part in args.cases.split(",") for c in CASES.get(part, [part])]
    for spec in args.variant or ["{}"]:
        over = json.loads(spec)
        for method in args.methods.split(","):
            for case in cases:
                y, oracle, task = observe(case, x)
                if method == "oracle" and oracle is None:
                    continue
                if method == "mimic" and task is None:
                    continue
                preset = get_task(task if method in ("mimic", "oracle") and task else "blind").config
                cfg = preset.replace(adapt_steps=args.steps, no_harm=0.0, **over)  # do-no-harm: experiments/no_harm.py
                trace, saved = {}, {}

                def cb(t, xr, fx, hist):
                    if t >= cfg.T:
                        trace[t - cfg.T] = float(psnr(to_uint8(xr[0]), val).mean())
                        saved[f"x{t - cfg.T}"], saved[f"fx{t - cfg.T}"] = xr[0].numpy(), fx[0].numpy()

                t0 = time.time()
                kw = oracle if method == "oracle" else {}
                o = solve(pr.G, pr.D, y, cfg, method="mimic" if method in ("blind", "mimic") else "pgd",
                      stats=pr.group_stats, generator=torch.Generator().manual_seed(0), callback=cb, **kw)
                obs = float(psnr(to_uint8(y[0]), val).mean()) if y.shape[2] == 3 else None
                rec = {"method": method, "case": case, "variant": spec, "steps": args.steps, "observed": obs,
                       "psnr": [trace[k] for k in sorted(trace)], "seconds": round(time.time() - t0, 1)}
                if args.save:  # for post-hoc rules (the do-no-harm blend): y, clean, x and f(x) at every report
                    os.makedirs(args.save, exist_ok=True)
                    np.savez_compressed(os.path.join(args.save, f"{method}_{case.replace(':', '_')}.npz"),
                                        y=y[0].numpy(), clean=x.numpy(), **saved)
                    torch.save({"surrogate": o.surrogate, "fill": o.fill},
                               os.path.join(args.save, f"{method}_{case.replace(':', '_')}.pt"))
                print(json.dumps(rec), flush=True)
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
