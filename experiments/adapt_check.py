"""Held-out pixels as the generator adaptation's stopping rule (``adapt_check``), on validation faces only.

    python experiments/adapt_check.py --methods oracle,mimic --cases task:stylize,task:gray_blur --n 16 \
        --steps 300 --check 0.1 --out runs/adapt_check.jsonl

One JSON line per (method, case, check): the mean PSNR at every measure of the held-out fit (every
``ADAPT_CHECK_EVERY`` steps, from step 0), the mean held-out fit there, and the PSNR of what each image kept (its step
with the lowest held-out fit), beside the best single step count in hindsight. Cases as in experiments/adapt.py.
"""
import argparse
import json
import time

import torch

from mimic import engine
from mimic.bench.report_utils import validation_faces
from mimic.engine import solve
from mimic.io import to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.priors import load_prior
from mimic.tasks import get_task

from adapt import CASES, observe  # noqa: E402 (experiments/ is the script's folder)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="oracle,mimic,blind")
    ap.add_argument("--cases", default="paper")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--check", type=float, default=0.1)
    ap.add_argument("--variant", default="{}", help="JSON overrides of the method's preset")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pr = load_prior("celeba64")
    val, _ = validation_faces(args.n, args.offset)
    x = to_tensor(val)
    cases = [c for part in args.cases.split(",") for c in CASES.get(part, [part])]
    trace = []
    original = engine._Run.keep_checked

    def recording(self, step):  # the measure of the held-out fit, recorded with the images then
        with torch.no_grad():
            xr = self.gen()
            trace.append((step, float(psnr(to_uint8(xr[0]), val).mean()),
                          float(self.fit.obs(self.f(xr), self.check).mean())))
        original(self, step)

    engine._Run.keep_checked = recording
    for method in args.methods.split(","):
        for case in cases:
            y, oracle, task = observe(case, x)
            if (method == "oracle" and oracle is None) or (method == "mimic" and task is None):
                continue
            preset = get_task(task if method in ("mimic", "oracle") and task else "blind").config
            cfg = preset.replace(adapt_steps=args.steps, adapt_check=args.check, no_harm=0.0,
                                 **json.loads(args.variant))
            trace.clear()
            before = {}

            def cb(t, xr, fx, hist):
                if t == cfg.T:
                    before["psnr"] = float(psnr(to_uint8(xr[0]), val).mean())

            t0 = time.time()
            o = solve(pr.G, pr.D, y, cfg, method="mimic" if method in ("blind", "mimic") else "pgd",
                      stats=pr.group_stats, generator=torch.Generator().manual_seed(0), callback=cb,
                      **(oracle if method == "oracle" else {}))
            kept = float(psnr(to_uint8(o.x[0]), val).mean())
            best = max([(0, before["psnr"], None)] + trace, key=lambda r: r[1])
            rec = {"method": method, "case": case, "check": args.check, "steps": args.steps,
                   "variant": args.variant, "before": before.get("psnr"), "kept": kept,
                   "kept_step_mean": float(o.adapt_kept.float().mean()),
                   "best_fixed": {"step": best[0], "psnr": best[1]},
                   "trace": [[s, round(p, 3), round(c, 5)] for s, p, c in trace],
                   "seconds": round(time.time() - t0, 1)}
            print(json.dumps({k: v for k, v in rec.items() if k != "trace"}), flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
