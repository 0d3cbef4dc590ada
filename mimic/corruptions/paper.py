"""The six blind-recovery tasks of the MimicGAN paper (64x64 RGB faces in [-1, 1]).

Where the paper's text and its appendix code leave a detail open, the choice made
here is stated in the class docstring.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Corruption, _check, blur, gaussian_kernel, quantize8, randn, register_corruption

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as cv2.cvtColor(RGB2GRAY)


@register_corruption("gray_blur")
class GrayBlur(Corruption):
    """Gaussian blur (15x15, OpenCV's default sigma 2.6), grayscale, 8-bit, truncated at 120.

    ``y = trunc(gray(blur(x)))``: a 1-channel observation. The truncation is
    ``cv2.THRESH_TRUNC`` at 120 on the 0-255 scale (so every value ends at or below
    120/127.5 - 1 = -0.059 on [-1, 1]). Rounding uses a straight-through gradient.
    """

    domain = "celeba"

    def __init__(self, ksize: int = 15, threshold: int = 120):
        super().__init__()
        self.ksize, self.threshold = ksize, threshold
        self.register_buffer("kernel", gaussian_kernel(ksize))
        self.register_buffer("gray", torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1))

    def out_channels(self, in_channels):
        return 1

    def params(self):
        return {"ksize": self.ksize, "threshold": self.threshold}

    def forward(self, x, *, generator=None):
        _check(x, self.name, 3)
        g = (blur(x, self.kernel) * self.gray).sum(1, keepdim=True)  # (N, 3, H, W) -> (N, 1, H, W)
        g = quantize8(g)
        return g.clamp(max=self.threshold / 127.5 - 1)


@register_corruption("stylize")
class Stylize(Corruption):
    """``cv2.stylization(sigma_s=10, sigma_r=0.8)`` on the 8-bit image, then the brightest 10%.

    Per image, every value above its 90th percentile (on [-1, 1], over all pixels and
    channels) is replaced by that percentile plus N(0, 0.5^2) noise; the result is
    clipped to [-1, 1]. Not differentiable (OpenCV); the oracle uses a straight-through
    gradient.
    """

    domain = "celeba"
    differentiable = False

    def __init__(self, sigma_s: float = 10.0, sigma_r: float = 0.8, top: float = 0.10, noise_std: float = 0.5):
        super().__init__()
        self.sigma_s, self.sigma_r, self.top, self.noise_std = sigma_s, sigma_r, top, noise_std

    def params(self):
        return {"sigma_s": self.sigma_s, "sigma_r": self.sigma_r, "top": self.top, "noise_std": self.noise_std}

    def forward(self, x, *, generator=None):
        import cv2

        _check(x, self.name, 3)
        u8 = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        u8 = u8.permute(0, 2, 3, 1).numpy()  # (N, C, H, W) -> (N, H, W, C)
        st = np.stack([cv2.stylization(np.ascontiguousarray(im[:, :, ::-1]), sigma_s=self.sigma_s,
                                       sigma_r=self.sigma_r)[:, :, ::-1] for im in u8])
        y = torch.from_numpy(np.ascontiguousarray(st)).permute(0, 3, 1, 2).float() / 127.5 - 1  # -> (N, C, H, W)
        q = torch.quantile(y.reshape(y.shape[0], -1), 1 - self.top, dim=1).view(-1, 1, 1, 1)
        noise = randn(y.shape, generator, y) * self.noise_std
        y = torch.where(y > q, q + noise, y).clamp(-1, 1)
        y = y.to(x)
        return x + (y - x).detach() if x.requires_grad else y  # straight-through


@register_corruption("stuck_pixels")
class StuckPixels(Corruption):
    """Column ``col`` (26) copied over all preceding columns, plus N(0, 0.25^2) noise.

    The noise is added to the stuck columns only (the rest of the image is intact)
    and is one pattern (C, H, col) shared by the whole batch, as the paper states.
    """

    domain = "celeba"

    def __init__(self, col: int = 26, noise_std: float = 0.25):
        super().__init__()
        self.col, self.noise_std = col, noise_std

    def params(self):
        return {"col": self.col, "noise_std": self.noise_std}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        n, c, h, w = x.shape
        noise = randn((1, c, h, self.col), generator, x) * self.noise_std  # one pattern for the batch
        stuck = x[:, :, :, self.col : self.col + 1].expand(n, c, h, self.col) + noise
        return torch.cat([stuck, x[:, :, :, self.col :]], dim=3).clamp(-1, 1)

    def known_mask(self, x, y):
        m = torch.ones(1, 1, y.shape[2], y.shape[3], device=y.device)
        m[..., : self.col] = 0
        return m


@register_corruption("negative")
class Negative(Corruption):
    """Gaussian blur (11x11, OpenCV's default sigma 2.0), then negation: ``y = -blur(x)``."""

    domain = "celeba"

    def __init__(self, ksize: int = 11):
        super().__init__()
        self.ksize = ksize
        self.register_buffer("kernel", gaussian_kernel(ksize))

    def params(self):
        return {"ksize": self.ksize}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        return -blur(x, self.kernel)


def _cross_mask(h: int, w: int, long: int = 42, short: int = 20) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    cy, cx = h // 2, w // 2
    m[cy - short // 2 : cy + short // 2, cx - long // 2 : cx + long // 2] = True  # horizontal bar 20 x 42
    m[cy - long // 2 : cy + long // 2, cx - short // 2 : cx + short // 2] = True  # vertical bar 42 x 20
    return m


@register_corruption("occlusion")
class Occlusion(Corruption):
    """A cross of two 20x42 bars over the image centre, filled with N(0, 0.5^2) noise (clipped)."""

    domain = "celeba"

    def __init__(self, long: int = 42, short: int = 20, noise_std: float = 0.5, size: int = 64):
        super().__init__()
        self.long, self.short, self.noise_std = long, short, noise_std
        self.register_buffer("mask", _cross_mask(size, size, long, short))

    def params(self):
        return {"bars": f"{self.short}x{self.long}", "noise_std": self.noise_std}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        noise = (randn(x.shape, generator, x) * self.noise_std).clamp(-1, 1)
        return torch.where(self.mask, noise, x)

    def known_mask(self, x, y):
        return (~self.mask).float().view(1, 1, *self.mask.shape)


@register_corruption("inpainting")
class Inpainting(Corruption):
    """Eight horizontal 4-pixel lines (rows 4:8, 12:16, ..., 60:64; columns 12:54) multiplied by N(0, 0.5^2)."""

    domain = "celeba"

    def __init__(self, noise_std: float = 0.5, size: int = 64, cols: tuple = (12, 54)):
        super().__init__()
        self.noise_std, self.cols = noise_std, cols
        m = torch.zeros(size, size, dtype=torch.bool)
        for r in range(4, size, 8):
            m[r : r + 4, cols[0] : cols[1]] = True
        self.register_buffer("mask", m)

    def params(self):
        return {"lines": "rows 4:8,12:16,...,60:64", "cols": f"{self.cols[0]}:{self.cols[1]}", "noise_std": self.noise_std}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        noise = randn(x.shape, generator, x) * self.noise_std
        return torch.where(self.mask, (x * noise).clamp(-1, 1), x)

    def known_mask(self, x, y):
        return (~self.mask).float().view(1, 1, *self.mask.shape)
