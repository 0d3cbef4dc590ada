"""The observation fit: how far the surrogate's imitation f(G(z)) is from the observation y.

The paper's L_obs is the mean |y - f(G(z))| per image. This module holds it together with the project's additions
to it, each one a named part that is off unless its ``MimicConfig`` field turns it on:

``obs_norm``  ("l1" | "l2") the surrogate's penalty of the residual. L1 is the paper's; an L1 fit is the per-pixel
              median, which says nothing when most pixels are destroyed (70% dropped: the median is black whatever
              x is), so the Fashion-MNIST presets fit in L2 (docs/DEFAULTS.md).
``fill``      pixels written with one constant (removed pixels, masked bands), detected per observation channel
              by ``imageops.fill_mask``, are left out of the fit: +0.5-3 dB where pixels are removed, nothing
              where none are.
``clip``      pixels piled up at an observation channel's own max (min) level, ``imageops.clip_sign``, only bound
              the fit: f(x) above a level clipped from above costs nothing (gray_blur's truncation: +1.9 dB).
``robust``    per-pixel weights from the residual the group of observations shares (``group_robust_weights``):
              what the surrogate cannot explain for the whole group (stuck columns, occluders, lines) stops
              steering z (occlusion +0.5 dB, inpainting +0.4, stuck_pixels +1.2).

The loop asks this object for three things: ``obs`` (L_obs per image, for the latent steps and the reports),
``obs_surrogate`` (the surrogate's own fit: fill-weighted only, so that it can learn what the robust weights mute)
and ``ident`` (the identity loss's two L1 terms). Shapes: y (S, B, C_obs, H, W), losses (S, B).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .imageops import clip_sign, fill_mask

__all__ = ["Fidelity", "group_robust_weights"]

_NORMS = {"l1": torch.abs, "l2": torch.square}  # obs_norm -> elementwise penalty of the residual y - f(x)


def per_image_mean(e: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Mean of e (S, B, C, H, W) per image -> (S, B), weighted by w (broadcastable to e) when given."""
    if w is None:
        return e.mean(dim=(2, 3, 4))
    return (e * w).mean(dim=(2, 3, 4)) / w.mean(dim=(2, 3, 4)).clamp(min=1e-6)


def one_sided(d: torch.Tensor, sign: torch.Tensor | None) -> torch.Tensor:
    """The residual d = y - f(x) with its uninformative side at clipped pixels set to 0: where sign > 0 (y clipped
    from above) f(x) >= y is consistent, so only d > 0 counts; where sign < 0 only d < 0."""
    if sign is None:
        return d
    return torch.where(sign * d < 0, 0.0, d)  # sign * d < 0: f(x) on the consistent side of a clipped y


def group_robust_weights(y: torch.Tensor, fx: torch.Tensor, valid: torch.Tensor, cfg,
                         clip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel latent-loss weights (``cfg.robust`` > 0) in (0, 1], shape (S, 1, C_obs, H, W).

    r = the group's median |y - f(G(z))| at each pixel over its valid observations (``robust_stat="abs"``), or
    |median of y - f(G(z))| (``"signed"``: what every observation shares, while the prior's own errors, of either
    sign from face to face, cancel), box-smoothed over ``robust_smooth`` pixels; weight = min(1, (robust *
    median(r) / r) ** robust_power), the median over the pixels of r. A pixel that the surrogate cannot explain for
    the whole group (stuck columns, occluders, lines) stops steering z.

    y, fx : (S, B, C_obs, H, W); valid : (S, B), 1 for real observations, 0 for padding; clip : ``clip_sign`` of
    y or None (the residual at clipped pixels is one-sided, as in L_obs).
    """
    if cfg.robust_stat not in ("abs", "signed"):
        raise ValueError(f"robust_stat must be 'abs' or 'signed', got {cfg.robust_stat!r}")
    r = one_sided(y - fx, clip)  # (S, B, C_obs, H, W), signed
    r = (r if cfg.robust_stat == "signed" else r.abs()).masked_fill(valid[:, :, None, None, None] == 0, float("nan"))
    r = r.nanmedian(dim=1, keepdim=True).values.abs()  # (S, 1, C_obs, H, W)
    if cfg.robust_smooth > 1:
        k = cfg.robust_smooth
        r = F.avg_pool2d(r.flatten(0, 2), k, stride=1, padding=k // 2, count_include_pad=False).view_as(r)
    scale = r.flatten(2).median(dim=2).values.clamp(min=1e-6)[:, :, None, None, None]  # (S, 1, 1, 1, 1)
    return (cfg.robust * scale / r.clamp(min=1e-6)).pow(cfg.robust_power).clamp(max=1.0)  # like r


class Fidelity:
    """The observation fit of S groups (see the module docstring).

    Parameters
    ----------
    y : torch.Tensor
        (S, B, C_obs, H, W) float observations on [-1, 1].
    cfg : MimicConfig
        Reads ``obs_norm``, ``fill``, ``clip`` and the ``robust*`` fields.
    valid : torch.Tensor
        (S, B), 1 for real observations, 0 for padding.
    blind : bool
        False for PGD and the oracle: an L1 fit and no robust weights.
    known : torch.Tensor, optional
        Not blind: the oracle's per-pixel weights broadcastable to y (1 observed, 0 destroyed).
    """

    def __init__(self, y: torch.Tensor, cfg, valid: torch.Tensor, *, blind: bool = True,
                 known: torch.Tensor | None = None):
        if cfg.obs_norm not in _NORMS:
            raise ValueError(f"obs_norm must be 'l1' or 'l2', got {cfg.obs_norm!r}")
        self.cfg, self.y, self.valid, self.known = cfg, y, valid, known
        self.penalty = _NORMS[cfg.obs_norm if blind else "l1"]  # PGD and the oracle stay L1
        self.use_robust = bool(cfg.robust) and blind
        self.fill = fill_mask(y) if cfg.fill else None  # (S, B, C_obs, H, W): 0 at detected fill pixels, or None
        self.clip = clip_sign(y) if cfg.clip else None  # (S, B, C_obs, H, W): +1 / -1 clipped from above / below
        self.robust = None  # (S, 1, C_obs, H, W) robust weights, once ``update_robust`` has run
        self._weights()

    def _weights(self) -> None:
        # the weights of the fit to y (L_obs and L_I's |y - G(z)|): fill x robust, derived only when either changes
        f, r = self.fill, self.robust
        self.w = f if r is None else r if f is None else f * r

    def obs(self, fx: torch.Tensor, part: torch.Tensor | None = None) -> torch.Tensor:
        """L_obs per image (S, B): the penalty of y - f(x), one-sided at clipped pixels, weighted by the fill mask,
        the robust weights and the oracle's known weights; over the pixels where ``part`` (broadcastable to y, 0 or
        1) is 1 when given."""
        e = self.penalty(one_sided(self.y - fx, self.clip))
        w = self.w
        if self.known is not None:
            w = self.known.to(self.y) if w is None else w * self.known.to(self.y)
        if part is not None:
            w = part if w is None else w * part
        return per_image_mean(e, w)

    def obs_surrogate(self, fx: torch.Tensor) -> torch.Tensor:
        """The surrogate's L_obs per image (S, B): weighted by the fill mask only (the robust weights mute pixels
        for z; the surrogate may learn to explain them, and then they lose their low weight)."""
        return per_image_mean(self.penalty(one_sided(self.y - fx, self.clip)), self.fill)

    def ident(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """The identity loss L_I = ||y - G(z)||_1 + ||f(G(z)) - G(z)||_1 per image (S, B); its first term weighted
        and one-sided as L_obs."""
        return per_image_mean(one_sided(self.y - x, self.clip).abs(), self.w) + (fx - x).abs().mean(dim=(2, 3, 4))

    def update_robust(self, fx: torch.Tensor, *, keep_lowest: bool = False) -> None:
        """New robust weights from the residual y - f(x); with ``keep_lowest`` a weight never rises again."""
        new = group_robust_weights(self.y, fx, self.valid, self.cfg, self.clip)
        self.robust = torch.minimum(self.robust, new) if keep_lowest and self.robust is not None else new
        self._weights()

    def select(self, idx: torch.Tensor) -> "Fidelity":
        """The fit of groups ``idx`` (S',) only (the candidate choice keeps one copy per group)."""
        new = object.__new__(Fidelity)
        new.__dict__.update(self.__dict__)
        new.y, new.valid = self.y[idx], self.valid[idx]
        new.fill = None if self.fill is None else self.fill[idx]
        new.clip = None if self.clip is None else self.clip[idx]
        new.robust = None if self.robust is None else self.robust[idx]
        if self.known is not None and self.known.ndim == 5 and self.known.shape[0] == self.y.shape[0]:
            new.known = self.known[idx]
        new._weights()
        return new

    def fill_fraction(self) -> torch.Tensor | None:
        """(S, B) fraction of each observation's values detected as fill and left out, or None."""
        return None if self.fill is None else (self.fill == 0).float().mean(dim=(2, 3, 4))
