"""Where stylize's gap comes from: PGD on the observation, with the noise-replaced pixels known (left out of the
fit), and on the stylized image without the noise (docs/TUNING.md 21). Validation faces, CPU.

    python benchmarks/stylize_diag.py --n 50 --offset 200
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tune import val_faces  # noqa: E402

from mimic.corruptions import get_corruption  # noqa: E402
from mimic.engine import solve  # noqa: E402
from mimic.io import to_tensor, to_uint8  # noqa: E402
from mimic.metrics import psnr  # noqa: E402
from mimic.priors import load_prior  # noqa: E402
from mimic.tasks import get_task  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--offset", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(2)
    faces = val_faces(args.n, args.offset)
    x = to_tensor(faces)
    y = get_corruption("stylize")(x, generator=torch.Generator().manual_seed(0))
    st = get_corruption("stylize", top=0.0)(x)  # stylized only, no noise
    q = torch.quantile(st.reshape(len(st), -1), 0.9, dim=1).view(-1, 1, 1, 1)
    keep = (st <= q).float()  # 1 where the noise does not write
    pr = load_prior("celeba64", device="cpu")
    cfg = get_task("stylize").config

    def run(obs, name, weight=None):
        outs = []
        for k in range(0, len(obs), 25):
            w = None if weight is None else weight[k : k + 25][None]
            outs.append(to_uint8(solve(pr.G, pr.D, obs[k : k + 25][None], cfg, method="pgd", weight=w).x[0]))
        print(f"{name:34s} {np.mean(psnr(np.concatenate(outs), faces)):.2f} dB", flush=True)

    print(f"{'observation':34s} {np.mean(psnr(to_uint8(y), faces)):.2f} dB")
    run(y, "PGD on the observation")
    run(y, "PGD, noise pixels known", keep)
    run(st, "PGD on the stylized image, no noise")


if __name__ == "__main__":
    main()
