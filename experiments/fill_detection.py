"""The thresholds of the fill and clip detections (``fill``, on in the blind preset; ``clip``, on in the gray_blur and
blind presets): a level held by at least 5% of a channel's pixels and 10 times more than any level within 2 of it.

How often the fill detection (``mimic.imageops.fill_mask``) and the clip detection (``mimic.imageops.clip_sign``)
fire, and how well. On the first N validation faces (clean, each paper task, each of Pajot et al.'s corruptions, with
precision and recall against the true removal mask where there is one), on 1,000 Fashion-MNIST test
images (clean and the three classify corruptions), and on the observations that `mimic bench blind`
committed under benchmarks/results/blind/obs (if present). Clip columns: images with clipped pixels, their
fraction, and the fraction at a level inside (0, 255), the only ones where ``clip`` changes a fit (at 0 and 255
every f(x) in [-1, 1] is already on the consistent side). ``--min-frac`` and ``--ratio`` try other thresholds.

Reproduce (200 validation faces, CPU, under a minute; expect fill on 1 of 200 clean faces and, among the paper
tasks, only on that face's occlusion and inpainting observations, on 1 of the 1,000 clean Fashion-MNIST images,
and on Pajot et al.'s masks with precision 0.9995-0.9998 and recall 0.987-0.992 for the pixel removals (patch_band:
0.989 and 0.993); clip inside (0, 255) on 196 of 200 gray_blur observations (51% of their pixels), on 3-7 of 200
of Pajot et al.'s observations (a fill at a channel's own maximum), and on no other paper task, clean face or
Fashion-MNIST image; on the damage of `mimic bench unseen`, no fill on the quantised kinds, posterize and shot noise,
since a channel with more than one interior spike is taken for quantised):

    python experiments/fill_detection.py --n 200
"""
from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mimic.bench.blind import PAPER_TASKS
from mimic.bench.reconstruct import CORRUPTIONS as PAJOT
from mimic.bench.report_utils import validation_faces
from mimic.corruptions import get_corruption
from mimic.data import default_data_root, load_fmnist
from mimic.imageops import clip_sign, fill_mask
from mimic.io import to_tensor, to_uint8
from mimic.tasks import get_task

def report(name, y, true_keep=None, thresholds=None):
    """y: float (N, C, H, W) on the 8-bit grid; true_keep: (N, 1|C, H, W), 1 where observed; thresholds: min_frac
    and ratio for both detections (default: theirs)."""
    thresholds = thresholds or {}
    m = fill_mask(y, **thresholds)
    hit = torch.zeros_like(y, dtype=torch.bool) if m is None else m == 0
    s = f"{name:30s} {int(hit.flatten(1).any(1).sum()):5d}/{len(y)} images  {float(hit.float().mean()):.4f} of pixels"
    if true_keep is not None:
        removed = ~(true_keep.expand_as(y) > 0.5)
        tp = int((hit & removed).sum())
        s += f"  precision {tp / max(int(hit.sum()), 1):.4f}  recall {tp / max(int(removed.sum()), 1):.4f}"
    c = clip_sign(y, **thresholds)
    c = torch.zeros_like(y) if c is None else c
    inner = (c != 0) & (y > -1 + 1e-3) & (y < 1 - 1e-3)
    s += (f"  | clip {int((c != 0).flatten(1).any(1).sum()):4d}/{len(y)} images  {float((c != 0).float().mean()):.4f} of"
          f" pixels, {float(inner.float().mean()):.4f} inside (0, 255)")
    print(s, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--min-frac", type=float, default=None, help="share of a channel's pixels a spike must hold")
    ap.add_argument("--ratio", type=float, default=None, help="how many times any level within 2 a spike must hold")
    args = ap.parse_args()
    thr = {k: v for k, v in (("min_frac", args.min_frac), ("ratio", args.ratio)) if v is not None}
    rep = functools.partial(report, thresholds=thr)
    clean = to_tensor(validation_faces(args.n)[0])
    print(f"# {args.n} validation faces: images with detected fill pixels, fraction of all pixels")
    rep("clean", clean)
    for t in PAPER_TASKS:
        rep(t, to_tensor(to_uint8(get_corruption(get_task(t).corruption)(clean, generator=torch.Generator().manual_seed(0)))))
    for t, (reg, kw) in PAJOT.items():
        c = get_corruption(reg, **kw)
        y = c(clean, generator=torch.Generator().manual_seed(0))
        rep(t, to_tensor(to_uint8(y)), c.known_mask(clean, y))
    from mimic.bench.unseen import DAMAGES, damage

    print("# the damage of bench unseen (its three halves, both strengths): quantised kinds (shot noise, posterize)"
          " must not read as fill")
    for k in DAMAGES:
        for lv in (0, 1):
            rep(f"{k} {lv}", to_tensor(damage(k, clean, lv)))
    x, _ = load_fmnist(default_data_root() / "fashion-mnist", "test")
    xf = to_tensor(x[-1000:])
    print("# the last 1,000 Fashion-MNIST test images")
    rep("fmnist clean", xf)
    for t in ("binarize", "drop_pixels", "blur_negative"):
        rep(f"fmnist {t}", to_tensor(to_uint8(get_corruption(get_task(t).corruption)(xf, generator=torch.Generator().manual_seed(0)))))
    obs = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "blind" / "obs"
    if obs.is_dir():
        print(f"# the test observations of bench blind ({obs})")
        for t in PAPER_TASKS:
            files = sorted((obs / t).glob("*.png"))
            if files:
                a = np.stack([np.asarray(Image.open(f)) for f in files])
                rep(t, to_tensor(a[..., None] if a.ndim == 3 else a))


if __name__ == "__main__":
    main()
