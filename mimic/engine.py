"""The MimicGAN engine: alternating surrogate / latent optimisation, and plain PGD.

Reads top to bottom:

1. ``MimicConfig``: every hyper-parameter, one comment each.
2. ``rmsprop_step``: a batched RMSProp with a per-group step scale (no host syncs).
3. ``losses``: L_obs, L_adv, L_I per image.
4. ``solve``: the algorithm on S groups at once (each group its own surrogate and
   latent codes), returning a ``SolveOutput``.

Shapes: observations ``y`` are (S, B, C_obs, H, W) in [-1, 1]; latent codes ``z``
(S, B, nz) in the box [-1, 1]^nz; ``G(z)`` (S, B, C, H, W) in [-1, 1]. ``valid``
(S, B) marks real images (1) vs padding (0) in a short last group.

Algorithm (MimicGAN, Anirudh et al., Algorithm 1) with this project's engineered
defaults (see ``docs/TUNING.md`` for the evidence):

    z <- z0 (mean of 1000 draws of U(-1,1)), for every observation
    f <- surrogate (identity-started "gated" by default), one copy per candidate start
         (identity, negated identity)
    warm start: ``warm_steps`` projected RMSProp steps on z through the initial f; after
                ``select_after`` of them each group keeps the candidate start with the lowest L_obs
    for t in 1..T:
        T1 RMSProp steps on f's weights with x = G(z) fixed     (L_obs + lam_I ||f(x) - x||)
        T2 RMSProp steps on z, each followed by z <- clip(z, -1, 1)   (L_obs + lam_adv L_adv + lam_I L_I)

PGD is the same loop with f = identity and lam_I = 0 (``method="pgd"``). With ``cfg.fill``, pixels that
``fill_mask`` takes for a constant fill (detected per observation before the loop) are left out of L_obs; with
``cfg.clip``, pixels that ``clip_sign`` takes for clipped count only where f(x) is on the wrong side of them;
with ``cfg.keep_observed`` the output keeps the observation's own values at the pixels that are not fill and
blends G(z) into them at the missing ones (for corruptions that only remove pixels), and in an observation with
no fill adds the TV-denoised residual y - G(z) to G(z) (for corruptions that only add noise).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F

from .surrogate import BatchedSurrogate

__all__ = ["MimicConfig", "SolveOutput", "blend_observed", "clip_sign", "denoise_tv", "fill_mask", "group_robust_weights",
           "noise_sigma", "solve", "z_init"]


@dataclass(frozen=True)
class MimicConfig:
    # --- loss weights (paper Table 1) ---
    lam_adv: float = 0.0  # weight of L_adv = log(1 - D(G(z))) = -softplus(logit)
    lam_I: float = 0.0  # weight of the identity loss L_I = ||y - G(z)||_1 + ||f(G(z)) - G(z)||_1
    # --- learning rates (RMSProp) ---
    lr_s: float = 2e-4  # gamma_s: surrogate weights
    lr_g: float = 1e-3  # gamma_g: latent codes in the alternation
    lr_warm: float = 1e-2  # latent codes in the warm start (and in PGD's first warm_steps steps)
    rms_alpha: float = 0.9  # RMSProp decay of the squared-gradient average (TensorFlow's default)
    rms_eps: float = 1e-8  # RMSProp epsilon
    # --- schedule (not published by the paper; chosen on validation faces) ---
    warm_steps: int = 200  # latent steps through the initial surrogate before the alternation
    select_after: int = 50  # warm steps after which each group keeps its best candidate start (then goes on alone)
    T: int = 10  # outer iterations of the alternation
    T1: int = 25  # surrogate steps per outer iteration
    T2: int = 20  # latent steps per outer iteration
    # --- surrogate ---
    surrogate: str = "gated"  # "gated" (identity-started), "paper" (random init) or "identity"
    inits: tuple = ("identity", "negated")  # gated only: candidate starts of the affine path; after the
    #   warm start each group keeps the candidate with the lowest L_obs (intensity inversion is a common
    #   corruption that an identity start cannot reach with small steps)
    last: str = "relu"  # paper surrogate's last activation: "relu" or "tanh" (occlusion, inpainting)
    hidden: int = 16  # surrogate convolution width
    separable: bool = False  # gated only: a learned separable linear spatial map (row and column matrices at
    #   identity) after the affine path, for corruptions that move or spread content further than 5x5 kernels reach
    # --- starts ---
    restarts: int = 1  # independent starts (first at z0, others U(-1,1)); the lowest L_obs is kept
    pgd_one_channel: str = "broadcast"  # PGD with a 1-channel y: "broadcast" (blind) or "mean" (knows it is gray)
    obs_norm: str = "l1"  # "l1" (paper) or "l2": the surrogate's L_obs norm (an L1 surrogate fit is the per-pixel median,
    #   which is uninformative when most pixels are destroyed, e.g. 70% dropped: the median is black whatever x is)
    # --- robust observation weights (blind; this project's addition, see docs/TUNING.md) ---
    robust: float = 0.0  # 0 = off. Otherwise, from the candidate selection (or robust_at) on and at each outer
    #   iteration, every pixel of a group gets the latent loss weight min(1, (robust * median r / r)^robust_power),
    #   r = the group's median |y - f(G(z))| at that pixel: pixels that the surrogate cannot explain for the whole
    #   group (stuck columns, occluders) stop steering z
    robust_power: float = 4.0  # sharpness of the robust weights
    robust_restart: bool = False  # restart z from its starting point once the first robust weights are known
    robust_at: int = 0  # warm step at which the first robust weights are computed (0: at the candidate selection,
    #   ``select_after``); later weights, from a z that the unexplained pixels have pulled less far, are sharper
    robust_surrogate: bool = False  # the surrogate's steps use the robust weights too (by default they fit every
    #   pixel, and can learn to absorb what the weights muted, which then loses its low weight)
    robust_keep: bool = False  # a pixel's weight never rises again once lowered (min over the outer iterations)
    robust_smooth: int = 1  # box filter size over the residual map before weighting (corruptions are spatially coherent)
    robust_stat: str = "abs"  # "abs": r is the group's median |y - f(G(z))|; "signed": |group median of y - f(G(z))|,
    #   the residual every image of the group shares (a corruption the surrogate has not captured, e.g. one noise
    #   pattern over stuck columns), while the prior's own errors, of either sign from face to face, cancel
    robust_scope: str = "group"  # "group": r is the group's median residual (a corruption shared by the group);
    #   "image": each observation's own residual and scale (corruption that differs per image, e.g. noise that
    #   replaces a content-dependent set of pixels)
    # --- missing pixels (blind; this project's addition, see docs/TUNING.md 15) ---
    fill: bool = False  # leave pixels written with a constant fill value out of L_obs (surrogate and latent steps):
    #   per observation channel, an 8-bit level held by >= 5% of the pixels and 10x more than its neighbour levels
    #   (``fill_mask``); per image, so a random mask drawn per image (which no group-shared f can learn) is handled
    keep_observed: bool = False  # with ``fill``: in an observation where fill was detected, the output takes the
    #   observation's own values at the pixels that are not fill, and G(z) Poisson-blended into them at the missing
    #   ones (``blend_observed``; inpainting's data consistency). Assumes the corruption removed pixels and left the
    #   others as they were: off by default, since an unknown corruption may also have changed the rest; needs as
    #   many observation channels as the prior has
    keep_tv: float = 0.7  # with ``keep_observed``: an observation with no fill detected (its pixels all observed,
    #   perhaps noisy) keeps G(z) plus its residual y - G(z) TV-denoised (``denoise_tv``) with weight keep_tv x the
    #   residual's estimated noise sigma (``noise_sigma``): the detail the prior misses, without the noise
    #   (docs/TUNING.md 31); 0 leaves such an observation's G(z) as it is
    clip: bool = False  # clipped pixels (a spike at an observation channel's own max or min level, ``clip_sign``) only
    #   bound x: their L_obs penalty is one-sided (f(x) above a level clipped from above costs nothing), so the fit
    #   (surrogate and latent steps) need not reproduce the truncation

    def latent_steps(self) -> int:
        """Total latent steps (PGD gets the same number)."""
        return self.warm_steps + self.T * self.T2

    def replace(self, **kw) -> "MimicConfig":
        unknown = set(kw) - set(asdict(self))
        if unknown:
            raise TypeError(f"unknown MimicConfig field(s) {sorted(unknown)}; valid: {sorted(asdict(self))}")
        return replace(self, **kw)


@dataclass
class SolveOutput:
    """What ``solve`` returns (tensors on the solve device unless noted).

    x : (S, B, C, H, W) recovered images G(z) in [-1, 1]
    fx : (S, B, C_obs, H, W) the surrogate's imitation f(G(z))
    z : (S, B, nz) latent codes in [-1, 1]
    obs_loss : (S, B) final per-image L_obs (mean absolute error per pixel)
    surrogate : the trained BatchedSurrogate (S groups)
    history : dict name -> (T+1, S) CPU tensor of group means per outer iteration (0 = after warm start)
    lr_scale : (S,) step scale each group ended with (< 1 after a divergence restart)
    init : list of str, per group the surrogate start it kept ("identity", "negated", "paper")
    fill : (S, B) fraction of each observation's values detected as fill and left out (``cfg.fill``), or None
    restarted : list of group indices that diverged and were restarted with a smaller step
    """

    x: torch.Tensor
    fx: torch.Tensor
    z: torch.Tensor
    obs_loss: torch.Tensor
    surrogate: BatchedSurrogate
    history: dict
    lr_scale: torch.Tensor
    restarted: list = field(default_factory=list)
    init: list = field(default_factory=list)
    fill: torch.Tensor | None = None


def z_init(nz: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """z0: the mean of 1000 draws of U(-1, 1)^nz (paper), shape (nz,). Seeded (0) when no generator is given."""
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return (torch.rand(1000, nz, generator=generator) * 2 - 1).mean(0)


def rmsprop_step(params, grads, states, lr: float, scale: torch.Tensor, alpha: float, eps: float) -> None:
    """In-place RMSProp on batched parameters whose first axis is the group axis S.

    ``scale`` (S,) multiplies the step of each group (divergence restarts halve it).
    """
    for p, g, v in zip(params, grads, states):
        v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        s = scale.view(-1, *([1] * (p.ndim - 1)))
        p.addcdiv_(g * s, v.sqrt().add_(eps), value=-lr)


def _obs_l1(y: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """Mean |y - f(x)| per image: (S, B, C_obs|C, H, W) -> (S, B); broadcasts a 1-channel side."""
    return (y - fx).abs().mean(dim=(2, 3, 4))


def blend_observed(x: torch.Tensor, y: torch.Tensor, observed: torch.Tensor, *, iters: int = 500) -> torch.Tensor:
    """Poisson blending of a recovery into its observation's observed pixels (``keep_observed``).

    The output is ``y`` where ``observed`` is 1; elsewhere ``x`` plus the harmonic interpolation of the residual
    ``y - x`` from the observed pixels (Jacobi iterations of the 4-neighbour average, borders replicated): the
    missing pixels keep x's gradients and meet the observed ones without a seam (Perez et al. 2003, as Yeh et al.
    2017 use it for GAN inpainting).

    Parameters
    ----------
    x, y : torch.Tensor
        (..., C, H, W) float, the recovery and the observation on [-1, 1] (same shape).
    observed : torch.Tensor
        (..., C, H, W) float, 1 at observed pixels, 0 at missing ones.
    iters : int
        Jacobi iterations (a 20-row hole has converged after about 200).

    Returns
    -------
    torch.Tensor
        (..., C, H, W) float on [-1, 1].
    """
    shape = x.shape
    c, h, w = shape[-3:]
    r = (y - x).reshape(-1, c, h, w)  # (..., C, H, W) -> (M, C, H, W)
    m = observed.reshape(-1, c, h, w) > 0
    k = x.new_tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).view(1, 1, 3, 3).repeat(c, 1, 1, 1)
    d = torch.where(m, r, torch.zeros_like(r))
    for _ in range(iters):
        d = torch.where(m, r, F.conv2d(F.pad(d, (1, 1, 1, 1), mode="replicate"), k, groups=c))
    return torch.where(m, y.reshape(r.shape), (x.reshape(r.shape) + d).clamp(-1, 1)).reshape(shape)


def noise_sigma(r: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the white noise in images, estimated per image (Immerkaer 1996).

    The mean absolute response to the 3x3 kernel [[1,-2,1],[-2,4,-2],[1,-2,1]] (which cancels planes and most of
    a smooth image), scaled by sqrt(pi/2)/6; the channels' estimates are averaged.

    Parameters
    ----------
    r : torch.Tensor
        (N, C, H, W) float, H and W >= 3.

    Returns
    -------
    torch.Tensor
        (N,) float, in the units of ``r``.
    """
    c = r.shape[1]
    k = r.new_tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3).repeat(c, 1, 1, 1)
    return F.conv2d(r, k, groups=c).abs().mean(dim=(1, 2, 3)) * (torch.pi / 2) ** 0.5 / 6


def denoise_tv(x: torch.Tensor, weight: torch.Tensor | float, *, iters: int = 200) -> torch.Tensor:
    """Total-variation denoising of each channel (Chambolle 2004's projection algorithm, as scikit-image's
    ``denoise_tv_chambolle`` runs it on each channel, with a fixed number of iterations).

    Parameters
    ----------
    x : torch.Tensor
        (N, C, H, W) float.
    weight : torch.Tensor | float
        (N,) or a scalar >= 0: the denoising weight per image, in the units of ``x`` (larger: smoother); 0 returns
        the image as it is.
    iters : int
        Iterations of the dual projection.

    Returns
    -------
    torch.Tensor
        (N, C, H, W) float.
    """
    w = torch.as_tensor(weight, dtype=x.dtype, device=x.device).expand(x.shape[0]).view(-1, 1, 1, 1)
    if (w < 0).any():
        raise ValueError("TV weight must be >= 0")
    inv = torch.where(w > 0, 0.25 / w.clamp(min=1e-12), torch.zeros_like(w))  # tau / weight, tau = 1 / (2 ndim)
    p = x.new_zeros((2, *x.shape))  # dual field, along H and W
    out = x
    for i in range(iters):
        if i > 0:  # out = x - div p  (the negative divergence of p, borders as scikit-image takes them)
            d = -(p[0] + p[1])
            d[..., 1:, :] += p[0][..., :-1, :]
            d[..., :, 1:] += p[1][..., :, :-1]
            out = x + d
        g = torch.stack([F.pad(out.diff(dim=-2), (0, 0, 0, 1)), F.pad(out.diff(dim=-1), (0, 1, 0, 0))])
        p = (p - 0.25 * g) / (1 + g.square().sum(0).sqrt() * inv)
    return torch.where(w > 0, out, x)


def _per_image_mean(e: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Mean of e (S, B, C, H, W) per image -> (S, B), weighted by w (broadcastable to e) when given."""
    if w is None:
        return e.mean(dim=(2, 3, 4))
    return (e * w).mean(dim=(2, 3, 4)) / w.mean(dim=(2, 3, 4)).clamp(min=1e-6)


def _one_sided(d: torch.Tensor, sign: torch.Tensor | None) -> torch.Tensor:
    """The residual d = y - f(x) where clipping makes it uninformative set to 0: where sign > 0 (y clipped from
    above) f(x) >= y is consistent, so only d > 0 counts; where sign < 0 only d < 0."""
    if sign is None:
        return d
    return torch.where(sign * d < 0, 0.0, d)  # sign * d < 0: f(x) on the consistent side of a clipped y


_NORMS = {"l1": torch.abs, "l2": torch.square}  # cfg.obs_norm -> elementwise penalty of the residual y - f(x)


def losses(y, x, fx, logits, cfg: MimicConfig, obs=_obs_l1, keep=None, clip=None):
    """Per-image losses (S, B): L_obs, L_adv, L_I (see module docstring).

    ``keep`` (broadcastable to y, optional): 0 at pixels that say nothing about x (detected fill), left out of
    L_I's |y - G(z)| term as ``obs`` leaves them out of L_obs. ``clip`` (like y, optional): ``clip_sign`` of y;
    L_I's |y - G(z)| term is one-sided at clipped pixels as ``obs`` makes L_obs.
    """
    l_obs = obs(y, fx)
    l_adv = -F.softplus(logits) if logits is not None else torch.zeros_like(l_obs)
    if cfg.lam_I:
        l_id = _per_image_mean(_one_sided(y - x, clip).abs(), keep) + (fx - x).abs().mean(dim=(2, 3, 4))
    else:
        l_id = torch.zeros_like(l_obs)
    return l_obs, l_adv, l_id


def group_robust_weights(y: torch.Tensor, fx: torch.Tensor, valid: torch.Tensor, cfg: MimicConfig,
                         clip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel latent-loss weights (``cfg.robust`` > 0), in (0, 1]: shape (S, 1, C_obs, H, W) for
    ``cfg.robust_scope = "group"``, (S, B, C_obs, H, W) for ``"image"``.

    r = the group's median |y - f(G(z))| at each pixel over its valid observations ("group"; with
    ``robust_stat = "signed"``, |median of y - f(G(z))|, what every observation shares), or each
    observation's own |y - f(G(z))| ("image"), optionally box-smoothed; weight = min(1, (robust * median(r) / r)
    ** robust_power), the median over r's pixels: a pixel that the surrogate cannot explain (for the whole group:
    stuck columns, occluders, lines; in one image: noise over a content-dependent set of pixels) stops steering z.
    y, fx : (S, B, C_obs, H, W); valid : (S, B), 1 for real observations, 0 for padding; clip : ``clip_sign`` of
    y or None (the residual at clipped pixels is one-sided, as in L_obs).
    """
    if cfg.robust_scope not in ("group", "image"):
        raise ValueError(f"robust_scope must be 'group' or 'image', got {cfg.robust_scope!r}")
    if cfg.robust_stat not in ("abs", "signed"):
        raise ValueError(f"robust_stat must be 'abs' or 'signed', got {cfg.robust_stat!r}")
    signed = cfg.robust_stat == "signed"
    if signed and cfg.robust_scope != "group":
        raise ValueError("robust_stat='signed' needs robust_scope='group' (the residual the group shares)")
    r = _one_sided(y - fx, clip)  # (S, B, C_obs, H, W), signed
    if cfg.robust_scope == "group":  # the median of the signed residual ("signed") or of its size ("abs")
        r = (r if signed else r.abs()).masked_fill(valid[:, :, None, None, None] == 0, float("nan"))
        r = r.nanmedian(dim=1, keepdim=True).values
    r = r.abs()
    if cfg.robust_smooth > 1:
        k = cfg.robust_smooth
        r = F.avg_pool2d(r.flatten(0, 2), k, stride=1, padding=k // 2, count_include_pad=False).view_as(r)
    scale = r.flatten(2).median(dim=2).values.clamp(min=1e-6)[:, :, None, None, None]  # (S, 1|B, 1, 1, 1)
    return (cfg.robust * scale / r.clamp(min=1e-6)).pow(cfg.robust_power).clamp(max=1.0)  # like r


def _level_spikes(y: torch.Tensor, min_frac: float, ratio: float):
    """Histogram spikes of each observation channel's 8-bit levels (shared by ``fill_mask`` and ``clip_sign``).

    y (..., C, H, W) in [-1, 1] -> (flat (M, H*W) levels, spike (M, 256) bool, lo (M, 1), hi (M, 1)), one row per
    image channel; a spike is a level held by >= ``min_frac`` of the pixels and ``ratio`` x any level within 2.
    """
    q = ((y.detach().clamp(-1, 1) + 1) * 127.5).round().long()  # (..., C, H, W) 8-bit levels
    hw = q.shape[-1] * q.shape[-2]
    flat = q.reshape(-1, hw)  # (M, H*W), one row per image channel
    counts = torch.zeros(flat.shape[0], 256, device=y.device).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float))
    padded = F.pad(counts, (2, 2))  # (M, 260)
    near = torch.stack([padded[:, 2 + d : 258 + d] for d in (-2, -1, 1, 2)]).amax(0)  # (M, 256) neighbours' max
    levels = torch.arange(256, device=y.device)
    present = counts > 0
    lo = torch.where(present, levels, 256).amin(1, keepdim=True)  # (M, 1) the channel's min level
    hi = torch.where(present, levels, -1).amax(1, keepdim=True)  # (M, 1) its max level
    spike = (counts >= min_frac * hw) & (counts >= ratio * near)  # (M, 256)
    return flat, spike, lo, hi


def fill_mask(y: torch.Tensor, *, min_frac: float = 0.05, ratio: float = 10.0) -> torch.Tensor | None:
    """Blind detection of pixels set to a constant (a fill value), shape like ``y``, or None if there are none.

    Missing pixels are commonly written as one constant (removed pixels, masked bands). In the 8-bit
    histogram of each observation channel, a fill value is a spike: a value held by at least ``min_frac``
    of the pixels and by ``ratio`` times more pixels than any value within 2 levels of it. Spikes at the
    channel's own minimum or maximum are left alone: there clipping makes them (a truncated highlight, a
    black background), and a clipped pixel still says something about x (see ``clip_sign``).

    Parameters
    ----------
    y : torch.Tensor
        (..., C, H, W) float observations in [-1, 1].

    Returns
    -------
    torch.Tensor or None
        float (..., C, H, W): 1 where the observation is used, 0 at detected fill pixels; None when no
        pixel of ``y`` is a fill (the common case, so the loss is computed exactly as without detection).
    """
    flat, spike, lo, hi = _level_spikes(y, min_frac, ratio)
    levels = torch.arange(256, device=y.device)
    spike = spike & (levels > lo) & (levels < hi)  # (M, 256)
    if not bool(spike.any()):
        return None
    is_fill = torch.gather(spike, 1, flat)  # (M, H*W)
    return (~is_fill).to(y.dtype).reshape(y.shape)


def clip_sign(y: torch.Tensor, *, min_frac: float = 0.05, ratio: float = 10.0) -> torch.Tensor | None:
    """Blind detection of clipped (saturated) pixels, shape like ``y``, or None if there are none.

    A spike (as in ``fill_mask``) at a channel's own maximum level is a truncation: those pixels only say that
    the unclipped value was at least that level; one at its minimum, at most. Photographs clip highlights,
    thresholds truncate (gray_blur at 120/255).

    Parameters
    ----------
    y : torch.Tensor
        (..., C, H, W) float observations in [-1, 1].

    Returns
    -------
    torch.Tensor or None
        float (..., C, H, W): +1 at pixels clipped from above (the true value is >= y), -1 at pixels clipped
        from below (<= y), 0 elsewhere; None when no channel has a spike at either end.
    """
    flat, spike, lo, hi = _level_spikes(y, min_frac, ratio)
    top = torch.gather(spike, 1, hi.clamp(min=0)) & (hi > lo)  # (M, 1): the channel's max level is a spike
    bot = torch.gather(spike, 1, lo.clamp(max=255)) & (hi > lo)
    if not bool((top | bot).any()):
        return None
    sign = (top & (flat == hi)).to(y.dtype) - (bot & (flat == lo)).to(y.dtype)  # (M, H*W)
    return sign.reshape(y.shape)


def _identity_view(x: torch.Tensor, cobs: int, mode: str) -> torch.Tensor:
    """f = identity for PGD: a 1-channel observation is compared with x by broadcasting or with x's channel mean."""
    if cobs == x.shape[2] or mode == "broadcast":
        return x
    return x.mean(dim=2, keepdim=True)


def solve(G, D, y: torch.Tensor, cfg: MimicConfig, *, method: str = "mimic", valid: torch.Tensor | None = None,
          generator: torch.Generator | None = None, callback: Callable | None = None,
          operator: Callable | None = None, weight: torch.Tensor | None = None,
          max_retries: int = 3, _z_start: torch.Tensor | None = None) -> SolveOutput:
    """Recover S groups of B observations at once.

    Parameters
    ----------
    G, D : nn.Module
        Frozen generator (z (N, nz) -> (N, C, H, W)) and discriminator (-> logits (N,)), eval mode.
    y : Tensor (S, B, C_obs, H, W), float32 in [-1, 1]
        Observations; the device of ``y`` is the device of the solve.
    cfg : MimicConfig
    method : {"mimic", "pgd"}
        ``pgd`` fixes f to the identity and lam_I to 0.
    valid : Tensor (S, B), optional
        1 for real observations, 0 for padding.
    generator : torch.Generator, optional
        CPU generator for z's restarts and the surrogate's initialisation.
    callback : callable(t, x, fx, out_history), optional
        Called after the warm start (t = 0) and each outer iteration with detached tensors.
    operator : callable, optional
        Not blind: with ``method="pgd"``, f is this known operator, (N, C, H, W) -> (N, C_obs, H, W),
        instead of the identity (the oracle baseline).
    weight : Tensor, optional
        Not blind: per-pixel weights of L_obs broadcastable to (S, B, C_obs, H, W) (1 where the
        observation is informative, 0 where the corruption destroyed it).
    """
    R = cfg.restarts
    if R > 1:
        # restarts: every observation R times along the batch axis (copy r of image b at r * B + b); the
        # first copy starts at z0, the others at U(-1, 1); each image keeps its copy with the lowest L_obs
        S, B = y.shape[:2]
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        z_start = torch.cat([z_init(G.nz, g).expand(S, B, G.nz),
                             torch.rand(S, (R - 1) * B, G.nz, generator=g) * 2 - 1], dim=1).to(y.device)
        vr = None if valid is None else valid.repeat(1, R)
        wr = weight.repeat(1, R, 1, 1, 1) if weight is not None and weight.ndim == 5 and weight.shape[1] == B else weight
        out = solve(G, D, y.repeat(1, R, 1, 1, 1), cfg.replace(restarts=1), method=method, valid=vr,
                    generator=generator, callback=callback, operator=operator, weight=wr, max_retries=max_retries,
                    _z_start=z_start)
        best = out.obs_loss.reshape(S, R, B).argmin(1)  # (S, B)
        idx = (best * B + torch.arange(B, device=best.device)).to(out.x.device)  # (S, B) index into R*B

        def pick(t):
            return torch.gather(t, 1, idx.view(S, B, *([1] * (t.ndim - 2))).expand(S, B, *t.shape[2:]))

        out.x, out.fx, out.z, out.obs_loss = pick(out.x), pick(out.fx), pick(out.z), pick(out.obs_loss)
        if out.fill is not None:
            out.fill = pick(out.fill)
        return out
    with torch.enable_grad():
        known = (operator, weight)
        out = _solve_once(G, D, y, cfg, method, valid, generator, callback,
                          torch.ones(y.shape[0], device=y.device), known, _z_start)
        retries = 0
        bad = _diverged(out)
        restarted = []
        while bad.numel() and retries < max_retries:
            retries += 1
            restarted = sorted(set(restarted) | set(bad.tolist()))
            # restart only the diverged groups, with half their step
            wb = weight[bad] if weight is not None and weight.shape[0] == y.shape[0] else weight
            sub = _solve_once(G, D, y[bad], cfg, method, None if valid is None else valid[bad], generator, None,
                              out.lr_scale[bad] * 0.5, (operator, wb),
                              None if _z_start is None else _z_start[bad.to(_z_start.device)])
            _merge(out, sub, bad)
            bad = _diverged(out)
        out.restarted = restarted
        return out


def _diverged(out: SolveOutput, blowup: float = 1.5) -> torch.Tensor:
    """Groups with non-finite results, or whose L_obs ended above ``blowup`` x its value after the warm start."""
    ok = torch.isfinite(out.x).flatten(1).all(1) & torch.isfinite(out.obs_loss).all(1)
    h = out.history["obs"]  # (T+1, S), CPU
    ok = ok.cpu() & ~(h[-1] > blowup * h[0])
    return (~ok).nonzero().flatten()


def _merge(out: SolveOutput, sub: SolveOutput, idx: torch.Tensor) -> None:
    for name in ("x", "fx", "z", "obs_loss", "lr_scale"):
        getattr(out, name)[idx.to(out.x.device)] = getattr(sub, name)
    for j, i in enumerate(idx.tolist()):
        out.init[i] = sub.init[j]
    with torch.no_grad():
        for (n, p), (_, q) in zip(out.surrogate.named_parameters(), sub.surrogate.named_parameters()):
            p[idx.to(p.device)] = q
    for k, v in out.history.items():
        v[:, idx] = sub.history[k]


def _solve_once(G, D, y, cfg, method, valid, generator, callback, lr_scale, known=(None, None),
                z_start=None) -> SolveOutput:
    if method not in ("mimic", "pgd"):
        raise ValueError(f"unknown method {method!r}; valid: mimic, pgd")
    device = y.device
    S, B, cobs, H, W = y.shape
    nz = G.nz
    cin = G.nc
    valid = torch.ones(S, B, device=device) if valid is None else valid.to(device=device, dtype=y.dtype)
    pgd = method == "pgd"
    lam_I = 0.0 if pgd else cfg.lam_I
    lam_adv = cfg.lam_adv
    use_D = lam_adv != 0.0
    cfg_run = replace(cfg, lam_I=lam_I)  # the loss settings of this run (PGD: lam_I = 0), built once

    # candidate starts: K copies of every group, candidate k of group s at k * S0 + s
    kind = "identity" if pgd else cfg.surrogate
    K = len(cfg.inits) if kind == "gated" else 1
    if K > 1 or (kind == "gated" and cfg.inits != ("identity",)):
        bad = set(cfg.inits) - {"identity", "negated"}
        if bad or len(set(cfg.inits)) != len(cfg.inits):
            raise ValueError(f"inits must be distinct values of ('identity', 'negated'), got {cfg.inits}")
    S0 = S
    S = K * S0
    y, valid, lr_scale = y.repeat(K, 1, 1, 1, 1), valid.repeat(K, 1), lr_scale.repeat(K)
    # latent codes: all start at z0 (the paper's initialisation)
    z0 = z_init(nz, generator).to(device).expand(S0, B, nz) if z_start is None else z_start.to(device)
    z = z0.repeat(K, 1, 1).clone().requires_grad_(True)  # (K*S0, B, nz)
    surrogate = BatchedSurrogate(kind, S, cin, cobs, H, last=cfg.last, hidden=cfg.hidden,
                                 separable=cfg.separable and not pgd, generator=generator).to(device)
    if kind == "gated":
        neg = torch.tensor([cfg.inits[k] == "negated" for k in range(K) for _ in range(S0)], device=device)
        surrogate.negate(neg)
    s_params = [p for p in surrogate.parameters()]
    z_state = torch.zeros_like(z)
    s_states = [torch.zeros_like(p) for p in s_params]

    def gen(zz):
        return G(zz.reshape(S * B, nz)).reshape(S, B, cin, H, W)  # (S*B, C, H, W) -> (S, B, C, H, W)

    operator, weight = known
    if operator is not None and not pgd:
        raise ValueError("a known operator is only used with method='pgd' (the oracle)")

    def f(x):
        if operator is not None:
            return operator(x.reshape(S * B, cin, H, W)).reshape(S, B, cobs, H, W)
        return _identity_view(x, cobs, cfg.pgd_one_channel) if pgd else surrogate(x)

    if cfg.keep_tv < 0:
        raise ValueError(f"keep_tv must be >= 0, got {cfg.keep_tv}")
    if cfg.keep_observed and not cfg.fill:
        raise ValueError("keep_observed needs fill=True (the observed pixels are those not detected as fill)")
    if cfg.obs_norm not in _NORMS:
        raise ValueError(f"obs_norm must be 'l1' or 'l2', got {cfg.obs_norm!r}")
    penalty = _NORMS["l1" if pgd else cfg.obs_norm]  # PGD (and the oracle) stay L1
    robust_w = None  # (S, 1|B, C_obs, H, W) blind per-pixel weights (cfg.robust), set during the alternation
    fill_w = fill_mask(y) if cfg.fill else None  # (S, B, C_obs, H, W) 0 at detected fill pixels, or None
    clip_s = clip_sign(y) if cfg.clip else None  # (S, B, C_obs, H, W) +1 / -1 at pixels clipped from above / below

    # weights of the fit to y (L_obs and L_I's |y - G(z)|): detected fill x robust weights, derived here only and
    # rebuilt whenever either changes (the candidate choice, new robust weights), not on every latent step
    keep_w = None

    def refit_weights():
        nonlocal keep_w
        keep_w = fill_w if robust_w is None else robust_w if fill_w is None else fill_w * robust_w

    refit_weights()

    def obs(yy, fx, weighted=True):  # L_obs per image (S, B), weighted by the detected fill mask (always), the known
        e = penalty(_one_sided(yy - fx, clip_s))  # mask (oracle) and the robust weights (unless weighted=False)
        w = keep_w if weighted else fill_w
        if weighted and weight is not None:
            w = weight.to(yy) if w is None else w * weight.to(yy)
        return _per_image_mean(e, w)

    hist = {k: [] for k in ("obs", "adv", "ident", "total")}

    def record(l_obs, l_adv, l_id):
        w = valid / valid.sum(1, keepdim=True).clamp(min=1)
        hist["obs"].append((l_obs * w).sum(1).detach())
        hist["adv"].append((l_adv * w).sum(1).detach())
        hist["ident"].append((l_id * w).sum(1).detach())
        hist["total"].append(((l_obs + lam_adv * l_adv + lam_I * l_id) * w).sum(1).detach())

    def latent_step(lr):
        x = gen(z)
        fx = f(x)
        logits = D(x.reshape(S * B, cin, H, W)).reshape(S, B) if use_D else None
        l_obs, l_adv, l_id = losses(y, x, fx, logits, cfg_run, obs, keep_w, clip_s)
        loss = ((l_obs + lam_adv * l_adv + lam_I * l_id) * valid).sum()
        (g,) = torch.autograd.grad(loss, [z])
        with torch.no_grad():
            rmsprop_step([z], [g], [z_state], lr, lr_scale, cfg.rms_alpha, cfg.rms_eps)
            z.clamp_(-1.0, 1.0)  # projection onto the box, in place on the parameter
        return x, fx, l_obs, l_adv, l_id

    def surrogate_step(x):
        fx = surrogate(x)
        l_obs = obs(y, fx, weighted=cfg.robust_surrogate)
        loss = l_obs
        if lam_I:
            loss = loss + lam_I * (fx - x).abs().mean(dim=(2, 3, 4))
        grads = torch.autograd.grad((loss * valid).sum(), s_params)
        with torch.no_grad():
            rmsprop_step(s_params, grads, s_states, cfg.lr_s, lr_scale, cfg.rms_alpha, cfg.rms_eps)

    # --- warm start: latent steps through each candidate initial surrogate, keep the best per group ---
    n_sel = min(cfg.select_after, cfg.warm_steps) if K > 1 else cfg.warm_steps
    for _ in range(n_sel):
        latent_step(cfg.lr_warm)
    if K > 1:
        with torch.no_grad():
            l_obs = obs(y, f(gen(z)))  # (K*S, B)
            per = ((l_obs * valid).sum(1) / valid.sum(1).clamp(min=1)).reshape(K, S0)
            idx = per.argmin(0) * S0 + torch.arange(S0, device=device)  # (S0,) winning candidate of each group
        S = S0
        y, valid, lr_scale = y[idx], valid[idx], lr_scale[idx]
        fill_w = None if fill_w is None else fill_w[idx]
        refit_weights()  # the winners' masks (S0, B, C_obs, H, W), not the K*S0 candidates'
        clip_s = None if clip_s is None else clip_s[idx]
        z = z.detach()[idx].clone().requires_grad_(True)
        z_state = z_state[idx].clone()
        surrogate = surrogate.select(idx)
        s_params = list(surrogate.parameters())
        s_states = [torch.zeros_like(p) for p in s_params]
        chosen_init = (idx // S0).cpu()
    else:
        chosen_init = torch.zeros(S0, dtype=torch.long)
    use_robust = bool(cfg.robust) and not pgd
    n_rob = min(max(cfg.robust_at, n_sel), cfg.warm_steps) if use_robust else n_sel  # steps before the first weights
    for _ in range(n_rob - n_sel):
        latent_step(cfg.lr_warm)
    if use_robust:
        with torch.no_grad():
            robust_w = group_robust_weights(y, f(gen(z)), valid, cfg, clip_s)
            refit_weights()
            if cfg.robust_restart:
                z0s = z0.repeat(K, 1, 1)[idx] if K > 1 else z0
                z.copy_(z0s)
                z_state.zero_()
    for _ in range(cfg.warm_steps - n_rob):
        latent_step(cfg.lr_warm)

    def evaluate():
        with torch.no_grad():
            x = gen(z)
            fx = f(x)
            logits = D(x.reshape(S * B, cin, H, W)).reshape(S, B)
            l_obs, l_adv, l_id = losses(y, x, fx, logits, cfg_run, obs, keep_w, clip_s)
            record(l_obs, l_adv, l_id)
            return x, fx, l_obs

    x, fx, l_obs = evaluate()
    if callback is not None:
        callback(0, x, fx, hist)
    # --- alternation ---
    for t in range(1, cfg.T + 1):
        if not pgd and s_params:
            x_fixed = x.detach()
            for _ in range(cfg.T1):
                surrogate_step(x_fixed)
        if use_robust:
            with torch.no_grad():
                w_new = group_robust_weights(y, f(x.detach()), valid, cfg, clip_s)
                robust_w = torch.minimum(robust_w, w_new) if cfg.robust_keep and robust_w is not None else w_new
                refit_weights()
        for _ in range(cfg.T2):
            latent_step(cfg.lr_g)
        x, fx, l_obs = evaluate()
        if callback is not None:
            callback(t, x, fx, hist)

    if cfg.keep_observed and cobs == cin:
        # (S, B, 1, 1, 1): images with fill keep their observed pixels, G(z) blended in where they are missing
        has_fill = None if fill_w is None else (fill_w == 0).flatten(2).any(2)[..., None, None, None]
        other = x
        if cfg.keep_tv > 0 and (has_fill is None or not bool(has_fill.all())):  # one sync, after the loop
            # images without fill: G(z) plus the denoised residual
            r = (y - x).reshape(S * B, cin, H, W)  # (S, B, C, H, W) -> (S*B, C, H, W)
            other = (x + denoise_tv(r, cfg.keep_tv * noise_sigma(r)).reshape(S, B, cin, H, W)).clamp(-1, 1)
        x = other if has_fill is None else torch.where(has_fill, blend_observed(x, y, fill_w), other)
    history = {k: torch.stack(v).cpu() for k, v in hist.items()}  # (T+1, S)
    return SolveOutput(x=x.detach(), fx=fx.detach(), z=z.detach(), obs_loss=l_obs.detach(), surrogate=surrogate,
                       history=history, lr_scale=lr_scale.clone(),
                       init=[cfg.inits[int(k)] if kind == "gated" else kind for k in chosen_init],
                       fill=None if fill_w is None else (fill_w == 0).float().mean(dim=(2, 3, 4)))  # depends on y only
