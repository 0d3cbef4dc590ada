"""Context weights for the band inpainting (Yeh et al. 2017's importance weighting; docs/TUNING.md Open).

    python benchmarks/context_weights.py 50 0 ";beta=0.2,k=7;beta=0.5,k=7;beta=0.2,k=15"

Pajot et al.'s patch_band on validation faces [offset, offset + n), the blind preset with keep_observed, one solve
per group of 25. Each variant weights the fit to the observed pixels by beta + (1 - beta) x (the fraction of fill
pixels in the k x k window around it, over its image's largest such fraction): pixels next to the band steer z
more. "" is the preset (no weights). Prints the MSE on [-1, 1].
"""
import json
import sys

import torch
import torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from mimic.corruptions import get_corruption
from mimic.engine import solve, fill_mask
from mimic.io import to_tensor, to_uint8
from mimic.priors import load_prior
from mimic.tasks import get_task
from tune import val_faces
torch.set_num_threads(2)
n, off = int(sys.argv[1]), int(sys.argv[2])
variants = sys.argv[3].split(";")
clean = to_tensor(val_faces(n, off))
y = to_tensor(to_uint8(get_corruption("patch_band")(clean, generator=torch.Generator().manual_seed(0))))
pr = load_prior("celeba64", device="cpu")
cfg = get_task("blind").config.replace(keep_observed=True)
S = n // 25
ys = y.reshape(S, 25, 3, 64, 64)
m = (fill_mask(ys) == 0).float()  # (S, B, C, H, W) 1 at fill
mse = lambda a: float(((a.reshape(-1, 3, 64, 64).clamp(-1, 1) - clean) ** 2).mean())
for v in variants:
    kw = dict(p.split("=") for p in v.split(",")) if v else {}
    beta, k = float(kw.get("beta", 1)), int(kw.get("k", 7))
    w = None
    if beta < 1:
        c = F.avg_pool2d(m.reshape(-1, 1, 64, 64), k, 1, k // 2, count_include_pad=False).reshape(m.shape)
        cn = c / c.flatten(2).amax(2)[..., None, None, None].clamp(min=1e-8)
        w = (1 - m) * (beta + (1 - beta) * cn)
        if bool((m.flatten(2).amax(2) == 0).any()):
            print("some image without fill")
    xs = [solve(pr.G, pr.D, ys[g:g + 1], cfg, generator=torch.Generator().manual_seed(g),
                weight=None if w is None else w[g:g + 1]).x for g in range(S)]
    print(json.dumps({"variant": v or "base", "mse": round(mse(torch.cat(xs)), 5)}), flush=True)
