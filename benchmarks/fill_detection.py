"""How often the fill detection (``mimic.engine.fill_mask``, the ``fill`` option) and the clip detection
(``mimic.engine.clip_sign``, the ``clip`` option) fire, and how well.

    python benchmarks/fill_detection.py --n 200

On the first N validation faces (clean, each paper task, each of Pajot et al.'s corruptions, with
precision and recall against the true removal mask where there is one), on 1,000 Fashion-MNIST test
images (clean and the three classify corruptions), and on the observations that `mimic bench blind`
committed under benchmarks/results/blind/obs (if present). Clip columns: images with clipped pixels, their
fraction, and the fraction at a level inside (0, 255), the only ones where ``clip`` changes a fit (at 0 and 255
every f(x) in [-1, 1] is already on the consistent side). docs/TUNING.md 15 and 16 quote its output.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from tune import PAJOT, val_faces  # noqa: E402

from mimic.corruptions import get_corruption  # noqa: E402
from mimic.data import default_data_root, load_fmnist  # noqa: E402
from mimic.engine import clip_sign, fill_mask  # noqa: E402
from mimic.io import to_tensor, to_uint8  # noqa: E402
from mimic.tasks import get_task  # noqa: E402

PAPER = ("gray_blur", "stylize", "negative", "stuck_pixels", "occlusion", "inpainting")


def report(name, y, true_keep=None):
    """y: float (N, C, H, W) on the 8-bit grid; true_keep: (N, 1|C, H, W), 1 where observed."""
    m = fill_mask(y)
    hit = torch.zeros_like(y, dtype=torch.bool) if m is None else m == 0
    s = f"{name:30s} {int(hit.flatten(1).any(1).sum()):5d}/{len(y)} images  {float(hit.float().mean()):.4f} of pixels"
    if true_keep is not None:
        removed = ~(true_keep.expand_as(y) > 0.5)
        tp = int((hit & removed).sum())
        s += f"  precision {tp / max(int(hit.sum()), 1):.4f}  recall {tp / max(int(removed.sum()), 1):.4f}"
    c = clip_sign(y)
    c = torch.zeros_like(y) if c is None else c
    inner = (c != 0) & (y > -1 + 1e-3) & (y < 1 - 1e-3)
    s += (f"  | clip {int((c != 0).flatten(1).any(1).sum()):4d}/{len(y)} images  {float((c != 0).float().mean()):.4f} of"
          f" pixels, {float(inner.float().mean()):.4f} inside (0, 255)")
    print(s, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    clean = to_tensor(val_faces(args.n))
    print(f"# {args.n} validation faces: images with detected fill pixels, fraction of all pixels")
    report("clean", clean)
    for t in PAPER:
        report(t, to_tensor(to_uint8(get_corruption(get_task(t).corruption)(clean, generator=torch.Generator().manual_seed(0)))))
    for t, (reg, kw) in PAJOT.items():
        c = get_corruption(reg, **kw)
        y = c(clean, generator=torch.Generator().manual_seed(0))
        report(t, to_tensor(to_uint8(y)), c.known_mask(clean, y))
    x, _ = load_fmnist(default_data_root() / "fashion-mnist", "test")
    xf = to_tensor(x[-1000:])
    print("# the last 1,000 Fashion-MNIST test images")
    report("fmnist clean", xf)
    for t in ("binarize", "drop_pixels", "blur_negative"):
        report(f"fmnist {t}", to_tensor(to_uint8(get_corruption(get_task(t).corruption)(xf, generator=torch.Generator().manual_seed(0)))))
    obs = Path(__file__).parent / "results" / "blind" / "obs"
    if obs.is_dir():
        print(f"# the test observations of bench blind ({obs})")
        for t in PAPER:
            files = sorted((obs / t).glob("*.png"))
            if files:
                a = np.stack([np.asarray(Image.open(f)) for f in files])
                report(t, to_tensor(a[..., None] if a.ndim == 3 else a))


if __name__ == "__main__":
    main()
