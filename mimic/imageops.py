"""Image operations below the solver: blind detection of fill and clipped pixels, noise level, TV denoising,
Poisson blending, and the keep-observed post-step built from them.

Every function takes (..., C, H, W) float tensors on [-1, 1] (or residuals in those units) and works on any device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["blend_observed", "clip_sign", "denoise_tv", "fill_mask", "keep_observed", "noise_sigma"]


#: A channel that uses at most ``QUANTISED_LEVELS`` distinct 8-bit levels and has more than ``MAX_INTERIOR_SPIKES``
#: spikes strictly between its own min and max is quantised (posterised, few-colour, photon-counting), not filled or
#: clipped: a fill is one constant, while every level of a quantised channel stands alone in its histogram. Its
#: spikes are dropped.
MAX_INTERIOR_SPIKES = 1
QUANTISED_LEVELS = 64


def _level_spikes(y: torch.Tensor, min_frac: float, ratio: float):
    """Histogram spikes of each observation channel's 8-bit levels (shared by ``fill_mask`` and ``clip_sign``).

    y (..., C, H, W) in [-1, 1] -> (flat (M, H*W) levels, spike (M, 256) bool, lo (M, 1), hi (M, 1)), one row per
    image channel; a spike is a level held by >= ``min_frac`` of the pixels and ``ratio`` x any level within 2, in
    a channel that is not quantised (``QUANTISED_LEVELS``, ``MAX_INTERIOR_SPIKES``; else none).
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
    quantised = (((spike & (levels > lo) & (levels < hi)).sum(1, keepdim=True) > MAX_INTERIOR_SPIKES)
                 & (present.sum(1, keepdim=True) <= QUANTISED_LEVELS))  # (M, 1)
    return flat, spike & ~quantised, lo, hi


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


def keep_observed(x: torch.Tensor, y: torch.Tensor, fill: torch.Tensor | None, *, tv: float = 0.7) -> torch.Tensor:
    """The keep-observed post-step: put back what the observation says for sure.

    An observation with detected fill (pixels removed and written as a constant) keeps its own values at the
    pixels that are not fill, with ``x`` Poisson-blended into the missing ones (``blend_observed``; inpainting's
    data consistency). An observation with no fill (all pixels observed, perhaps noisy) gets ``x`` plus its
    residual ``y - x`` TV-denoised at ``tv`` x the residual's estimated noise sigma (``denoise_tv``,
    ``noise_sigma``): the detail the prior misses, without the noise. Assumes the corruption removed pixels or
    added noise and left the rest as it was.

    Parameters
    ----------
    x, y : torch.Tensor
        (S, B, C, H, W) float on [-1, 1]: recoveries G(z) and their observations (as many channels).
    fill : torch.Tensor or None
        (S, B, C, H, W) float, 0 at detected fill pixels and 1 elsewhere (``fill_mask``), or None (no fill).
    tv : float
        Denoising weight in units of the residual's noise sigma; 0 leaves observations without fill at ``x``.

    Returns
    -------
    torch.Tensor
        (S, B, C, H, W) float on [-1, 1].
    """
    if tv < 0:
        raise ValueError(f"keep_tv must be >= 0, got {tv}")
    S, B, C, H, W = x.shape
    # (S, B, 1, 1, 1): images with fill keep their observed pixels, x blended in where they are missing
    has_fill = None if fill is None else (fill == 0).flatten(2).any(2)[..., None, None, None]
    other = x
    if tv > 0 and (has_fill is None or not bool(has_fill.all())):  # one host sync, after the loop
        r = (y - x).reshape(S * B, C, H, W)  # (S, B, C, H, W) -> (S*B, C, H, W)
        other = (x + denoise_tv(r, tv * noise_sigma(r)).reshape(S, B, C, H, W)).clamp(-1, 1)
    return other if has_fill is None else torch.where(has_fill, blend_observed(x, y, fill), other)
