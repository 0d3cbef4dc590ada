"""PSNR after every outer iteration, and of the mean of the last k iterates' G(z), on validation faces (CPU).

Answers whether a task's PSNR oscillates between outer iterations (averaging the last iterates would then gain)
or is still rising at the end (more iterations would), docs/TUNING.md 25:

    python benchmarks/iterate_average.py --task stylize --n 100 --offset 250 [--variant 'T=54']
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tune import parse_variant, val_faces  # noqa: E402

from mimic.api import recover  # noqa: E402
from mimic.corruptions import get_corruption  # noqa: E402
from mimic.io import to_tensor, to_uint8  # noqa: E402
from mimic.metrics import psnr  # noqa: E402
from mimic.tasks import get_task  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--offset", type=int, default=250)
    ap.add_argument("--variant", default="", help="MimicConfig overrides, as in tune.py")
    args = ap.parse_args()
    torch.set_num_threads(2)
    clean_u8 = val_faces(args.n, args.offset)
    corr = get_corruption(get_task(args.task).corruption)
    y_u8 = to_uint8(corr(to_tensor(clean_u8), generator=torch.Generator().manual_seed(0)))
    traces = []  # one per group (of 25): G(z) after the warm start and after every outer iteration

    def cb(t, x, fx, hist):
        if t == 0:
            traces.append([])
        traces[-1].append(x[0].detach().clone())  # (B, C, H, W): one group per engine call on the CPU

    r = recover(y_u8, task=args.task, method="mimic", prior="celeba64", device="cpu", callback=cb,
                **parse_variant(args.variant))
    if len(traces) != (args.n + 24) // 25:
        raise SystemExit(f"expected one trace per group, got {len(traces)} (a diverged group was restarted)")
    out = {"task": args.task, "n": args.n, "offset": args.offset, "variant": args.variant,
           "final": float(psnr(r.images, clean_u8).mean())}
    T = len(traces[0])
    for k in (2, 4, 8):
        if k < T:
            mean_k = torch.cat([torch.stack(tr[-k:]).mean(0) for tr in traces])  # (n, C, H, W)
            out[f"mean_of_last_{k}"] = float(psnr(to_uint8(mean_k), clean_u8).mean())
    out["per_iteration"] = [round(float(psnr(to_uint8(torch.cat([tr[t] for tr in traces])), clean_u8).mean()), 2)
                            for t in range(T)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
