"""Corruptions of Pajot et al., *Unsupervised Adversarial Image Reconstruction* (ICLR 2019).

Removed pixels are set to 0 on the [-1, 1] scale (mid-gray), as in that paper's code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Corruption, _check, rand, randn, register_corruption


@register_corruption("remove_pixel")
class RemovePixel(Corruption):
    """Each pixel (all channels together) removed (set to 0) with probability ``p``."""

    def __init__(self, p: float = 0.9):
        super().__init__()
        self.p = p
        self._last_mask = None

    def params(self):
        return {"p": self.p}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        n, c, h, w = x.shape
        keep = rand((n, 1, h, w), generator, x) >= self.p
        self._last_mask = keep
        return x * keep

    def known_mask(self, x, y):
        return self._last_mask.float() if self._last_mask is not None else None


@register_corruption("remove_pixel_channel")
class RemovePixelChannel(RemovePixel):
    """Each (pixel, channel) removed (set to 0) independently with probability ``p``."""

    def __init__(self, p: float = 0.95):
        super().__init__(p)

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        keep = rand(x.shape, generator, x) >= self.p
        self._last_mask = keep
        return x * keep


@register_corruption("convolve_noise")
class ConvolveNoise(Corruption):
    """Box filter of size ``l`` (zero padding) plus N(0, sigma^2) noise."""

    def __init__(self, l: int = 3, sigma: float = 0.15):
        super().__init__()
        self.l, self.sigma = l, sigma

    def params(self):
        return {"l": self.l, "sigma": self.sigma}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        c = x.shape[1]
        k = torch.full((c, 1, self.l, self.l), 1.0 / self.l**2, device=x.device, dtype=x.dtype)
        y = F.conv2d(x, k, padding=self.l // 2, groups=c)
        return (y + randn(y.shape, generator, y) * self.sigma).clamp(-1, 1)


@register_corruption("patch_band")
class PatchBand(Corruption):
    """A horizontal band of ``h`` rows at a random height (per image) set to 0."""

    def __init__(self, h: int = 20):
        super().__init__()
        self.h = h
        self._last_mask = None

    def params(self):
        return {"h": self.h}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        n, c, hh, w = x.shape
        top = (rand((n,), generator, torch.empty(0)) * (hh - self.h + 1)).long()  # (N,)
        rows = torch.arange(hh)
        band = (rows[None, :] >= top[:, None]) & (rows[None, :] < top[:, None] + self.h)  # (N, H)
        keep = (~band).to(x.device).view(n, 1, hh, 1)
        self._last_mask = keep
        return x * keep

    def known_mask(self, x, y):
        return self._last_mask.float() if self._last_mask is not None else None
