"""What keeping the observed pixels does (``keep_observed``, docs/TUNING.md 23): MimicGAN (the blind preset) on
Pajot et al.'s corruptions, MSE on [-1, 1] of G(z), of G(z) with the observed pixels pasted in, and of the output
(observed pixels kept, G(z) Poisson-blended into them), on validation faces (CPU). One recovery per corruption:
G(z) is regenerated from the returned latent codes.

    python benchmarks/keep_observed.py --n 50 --offset 0
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
from mimic.bench.reconstruct import CORRUPTIONS  # noqa: E402
from mimic.corruptions import get_corruption  # noqa: E402
from mimic.engine import fill_mask  # noqa: E402
from mimic.io import to_tensor, to_uint8  # noqa: E402
from mimic.priors import load_prior  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--corruptions", default="patch_band,remove_pixel_0.95,remove_pixel_channel_0.95,convolve_noise")
    ap.add_argument("--variant", default="", help="MimicConfig overrides, as in tune.py (e.g. 'restarts=2')")
    args = ap.parse_args()
    torch.set_num_threads(2)
    pr = load_prior("celeba64", device="cpu")
    clean = to_tensor(val_faces(args.n, args.offset))  # (n, 3, 64, 64) in [-1, 1]
    out = {"n": args.n, "offset": args.offset, "variant": args.variant}
    for cname in args.corruptions.split(","):
        reg, kw = CORRUPTIONS[cname]
        y_u8 = to_uint8(get_corruption(reg, **kw)(clean, generator=torch.Generator().manual_seed(0)))
        r = recover(y_u8, task=None, method="mimic", prior=pr, device="cpu", seed=0, keep_observed=True,
                    **parse_variant(args.variant))
        with torch.no_grad():
            gz = pr.G(r.z).reshape(clean.shape)  # (n, nz) -> (n, 3, 64, 64): G(z) before the observed pixels are kept

        def mse(a):
            return float(((a - clean) ** 2).mean())

        y = to_tensor(y_u8)
        m = fill_mask(y)  # (n, 3, 64, 64) 1 at observed pixels, or None where no image has fill
        has = torch.from_numpy(r.fill > 0).view(-1, 1, 1, 1)
        pasted = gz if m is None else torch.where(has & (m > 0), y, gz)
        out[cname] = {"gz": mse(gz), "pasted": mse(pasted), "keep_observed": mse(r.tensor),
                      "images_with_fill": int(has.sum())}
        print(cname, out[cname], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
