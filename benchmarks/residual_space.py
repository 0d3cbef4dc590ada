"""convolve_noise (Pajot et al.): where the floor is, and which residual keep_observed should denoise (docs/TUNING.md Open).

    python benchmarks/residual_space.py 25 0

Validation faces [offset, offset + n); per (l, sigma): MSE on [-1, 1] of the blurred clean face B x (the floor of any
output that only denoises), the observation, G(z) (blind preset), f(G(z)) against B x, and for TV weights k x the
residual's estimated sigma: A = G(z) + TV(y - G(z)) (what keep_observed does), B = G(z) + TV(y - f(G(z))), their
mean, and TV(y)."""
import json
import sys

import numpy as np
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from mimic import recover
from mimic.corruptions import get_corruption
from mimic.engine import denoise_tv, noise_sigma
from mimic.io import to_tensor, to_uint8
from tune import val_faces
torch.set_num_threads(2)
n, off = int(sys.argv[1]), int(sys.argv[2])
clean = to_tensor(val_faces(n, off))
mse = lambda a: float(((a.clamp(-1, 1) - clean) ** 2).mean())
for l, sigma in [(3, 0.15), (5, 0.1), (3, 0.05)]:
    c = get_corruption("convolve_noise", l=l, sigma=sigma)
    blur = get_corruption("convolve_noise", l=l, sigma=0.0)  # B alone: the box filter, no noise
    bx = blur(clean)
    y = to_tensor(to_uint8(c(clean, generator=torch.Generator().manual_seed(0))))
    rec = recover(to_uint8(y), task=None, prior="celeba64", device="cpu", seed=0)
    x = rec.tensor
    fx = to_tensor(np.stack(rec.mimicked))
    res = {"l": l, "sigma": sigma, "floor_Bx": mse(bx), "obs": mse(y), "G": mse(x), "f(G)_vs_Bx": float(((fx - bx) ** 2).mean()),
           "G_blur_vs_Bx": float(((blur(x) - bx) ** 2).mean())}
    for k in (0.5, 0.7, 1.0):
        rA = y - x; rB = y - fx
        A = x + denoise_tv(rA, k * noise_sigma(rA)); B = x + denoise_tv(rB, k * noise_sigma(rB))
        res[f"A k={k}"] = mse(A); res[f"B k={k}"] = mse(B); res[f"AB k={k}"] = mse((A + B) / 2)
        res[f"tv(y) k={k}"] = mse(denoise_tv(y, k * noise_sigma(y)))
    print(json.dumps({a: round(b, 5) if isinstance(b, float) else b for a, b in res.items()}), flush=True)
