"""Two post-steps after the blind preset's generator adaptation, offline on what `experiments/adapt.py --save` wrote
(validation faces only): do-no-harm (the engine's rule, ``MimicConfig.no_harm``: the output moves towards the
observation by how its estimated damage compares with the recovery's estimated error) at several trusted errors,
powers and shares of the unexplained residual, per image and per group (the engine: the group's medians),
and IAGAN's back-projection through the group's surrogate (x + f'(x)^+ D(y - f(x)), CGLS, the fit's fill and robust
weights, D a TV denoiser), which is not in the engine (it cost gray_blur 2 dB). Per case: PSNR of the observation,
of the recovery before the adaptation (x0), after each quarter of it (x1..x4), and of the post-steps on x0, x2, x4.

    python experiments/adapt.py --methods blind --cases clean,paper,tune --n 16 --steps 300 \
        --out runs/adapt_blind.jsonl --save runs/adapt_npz
    python experiments/no_harm.py runs/adapt_npz [--no-back-projection]
"""
import argparse
import glob
import json
import os

import numpy as np
import torch

from mimic.fidelity import group_robust_weights
from mimic.imageops import clip_sign, denoise_tv, fill_mask, noise_sigma
from mimic.io import to_uint8
from mimic.metrics import psnr
from mimic.tasks import get_task


def back_project(x: torch.Tensor, y: torch.Tensor, f, *, weight: torch.Tensor | None = None, iters: int = 3,
                 tv: float = 0.7) -> torch.Tensor:
    """Back-projection of a recovery onto its observation through an operator: ``x + delta``, where ``delta``
    solves ``f(x + delta) ~ f(x) + D(y - f(x))`` in least squares, ``D`` the TV denoiser at ``tv`` x the residual's
    estimated noise sigma (``denoise_tv``, ``noise_sigma``).

    IAGAN's last step (Abu Hussein et al. 2020: x + A^+(y - A x)) with the operator A the (learned or known) ``f``
    linearised at x, its pseudo-inverse approximated by ``iters`` iterations of CGLS (conjugate gradients on the
    normal equations, per image, started at 0): the part of the observation that the recovery does not explain goes
    back into it, in the image space. With f the identity one iteration gives ``x + D(y - x)``; the iteration count
    regularises the inverse of an f that loses detail (a blur). Pixels of weight 0 (fill, occluders) put nothing back.

    Parameters
    ----------
    x : torch.Tensor
        (S, B, C, H, W) float recoveries on [-1, 1].
    y : torch.Tensor
        (S, B, C_obs, H, W) float observations on [-1, 1].
    f : callable
        (S, B, C, H, W) -> (S, B, C_obs, H, W), differentiable (a surrogate or a known operator).
    weight : torch.Tensor, optional
        Broadcastable to y, in [0, 1]: how much each observed value counts (the fit's fill and robust weights).
    iters : int
        CGLS iterations (>= 1).
    tv : float
        Denoising weight of the residual in units of its noise sigma (0: the residual as it is).

    Returns
    -------
    torch.Tensor
        (S, B, C, H, W) float on [-1, 1].
    """
    from torch.func import jvp, vjp

    if iters < 1 or tv < 0:
        raise ValueError(f"back_project needs iters >= 1 and tv >= 0, got {iters}, {tv}")
    S, B = x.shape[:2]
    with torch.enable_grad():
        fx, pullback = vjp(f, x)
    r = (y - fx).detach()
    if tv > 0:
        flat = r.reshape(S * B, *r.shape[2:])  # (S, B, C_obs, H, W) -> (S*B, C_obs, H, W)
        r = denoise_tv(flat, tv * noise_sigma(flat)).reshape(r.shape)
    w = torch.ones_like(r) if weight is None else weight.expand_as(r).to(r)
    sw = w.sqrt()

    def A(v):  # W^1/2 J v
        return sw * jvp(f, (x,), (v,))[1]

    def At(u):  # J^T W^1/2 u
        return pullback(sw * u)[0]

    def dot(a, b):  # per-image inner products (S, B, 1, 1, 1)
        return (a * b).sum(dim=(2, 3, 4), keepdim=True)

    with torch.no_grad():  # CGLS: min || W^1/2 (J delta - r) ||^2 per image, from delta = 0
        delta = torch.zeros_like(x)
        res = sw * r
        s = At(res)
        p, gamma = s, dot(s, s)
        for _ in range(iters):
            q = A(p)
            alpha = gamma / dot(q, q).clamp(min=1e-12)
            delta = delta + alpha * p
            res = res - alpha * q
            s = At(res)
            gamma_new = dot(s, s)
            p = s + gamma_new / gamma.clamp(min=1e-12) * p
            gamma = gamma_new
    return (x + delta).clamp(-1, 1)


def do_no_harm(x, y, fx, trusted, power=4, share=0.5, group=True):
    """The engine's rule (``MimicConfig.no_harm``, ``_Run.no_harm``): x + w (y - x), w = e_x^p / (e_x^p + e_y^p),
    e_y = |f(x) - x|^2 + sigma^2 + u, e_x = trusted + share u, u = max(0, |y - f(x)|^2 - sigma^2); with ``group`` the
    medians of e_x and e_y over the group (the engine), else per image (its first version: share 0, power 2).
    ``fx`` is f(x), the surrogate applied to the recovery."""
    with torch.no_grad():
        sig2 = noise_sigma(y.flatten(0, 1)).square().view(y.shape[:2])
        u = ((y - fx).square().mean(dim=(2, 3, 4)) - sig2).clamp(min=0)
        e_y = (fx - x).square().mean(dim=(2, 3, 4)) + sig2 + u
        e_x = trusted + share * u
        if group:
            e_y, e_x = e_y.median(dim=1, keepdim=True).values, e_x.median(dim=1, keepdim=True).values
        w = e_x ** power / (e_x ** power + e_y ** power)
        return x + w[..., None, None, None] * (y - x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--iters", default="1,3", help="CGLS iterations of the back-projection")
    ap.add_argument("--tv", type=float, default=0.7, help="the back-projection's TV weight (x the noise sigma)")
    ap.add_argument("--trusted", default="0.02,0.025,0.03", help="do-no-harm trusted errors")
    ap.add_argument("--no-back-projection", action="store_true", help="do-no-harm only (the back-projection is slow)")
    args = ap.parse_args()
    cfg = get_task("blind").config
    for path in sorted(glob.glob(os.path.join(args.folder, "*.npz"))):
        d = np.load(path)
        sur = torch.load(path[:-4] + ".pt", weights_only=False)["surrogate"]
        clean = to_uint8(torch.from_numpy(d["clean"]))
        y = torch.from_numpy(d["y"])[None]
        fill = fill_mask(y) if cfg.fill else None
        clip = clip_sign(y) if cfg.clip else None
        row = {"case": os.path.basename(path)[:-4],
               "observed": float(psnr(to_uint8(y[0]), clean).mean()) if y.shape[2] == 3 else None}
        for k in range(5):
            if f"x{k}" not in d:
                continue
            x = torch.from_numpy(d[f"x{k}"])[None]
            fx = torch.from_numpy(d[f"fx{k}"])[None]
            row[f"x{k}"] = float(psnr(to_uint8(x[0]), clean).mean())
            if k not in (0, 2, 4):
                continue
            w = group_robust_weights(y, fx, torch.ones(1, y.shape[1]), cfg, clip)
            w = w if fill is None else w * fill
            for it in () if args.no_back_projection else map(int, args.iters.split(",")):
                out = back_project(x, y, sur, weight=w, iters=it, tv=args.tv)
                row[f"x{k}_bp{it}"] = float(psnr(to_uint8(out[0]), clean).mean())
            if y.shape[2] == 3:
                with torch.no_grad():
                    fxk = sur(x)
                for trusted in map(float, args.trusted.split(",")):
                    for power in (2, 3, 4):
                        for share in (0.0, 0.5, 1.0):
                            for group in (False, True):
                                res = do_no_harm(x, y, fxk, trusted, power, share, group)
                                key = f"x{k}_harm{trusted}_p{power}_u{share}_{'group' if group else 'image'}"
                                row[key] = float(psnr(to_uint8(res[0]), clean).mean())
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
