"""Fashion-MNIST corruptions of the MimicGAN paper's robust-classification experiment (28x28x1)."""
from __future__ import annotations

import torch

from .base import Corruption, _check, blur, gaussian_kernel, rand, register_corruption


@register_corruption("binarize")
class Binarize(Corruption):
    """Per image: 1 where the value exceeds the image's median (50th percentile), else -1."""

    domain = "fmnist"
    differentiable = False

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        med = x.reshape(x.shape[0], -1).median(dim=1).values.view(-1, 1, 1, 1)
        y = torch.where(x > med, 1.0, -1.0).to(x)
        return x + (y - x).detach() if x.requires_grad else y


@register_corruption("drop_pixels")
class DropPixels(Corruption):
    """70% of the pixels (``p``) set to 0 on the [0, 1] scale, i.e. -1 (black) on [-1, 1]."""

    domain = "fmnist"

    def __init__(self, p: float = 0.7):
        super().__init__()
        self.p = p

    def params(self):
        return {"p": self.p}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        keep = rand(x.shape, generator, x) >= self.p
        return torch.where(keep, x, torch.full_like(x, -1.0))


@register_corruption("blur_negative")
class BlurNegative(Corruption):
    """Gaussian blur with a 25x25 kernel (OpenCV's default sigma 4.1), then inversion ``y = -blur(x)``."""

    domain = "fmnist"

    def __init__(self, ksize: int = 25):
        super().__init__()
        self.ksize = ksize
        self.register_buffer("kernel", gaussian_kernel(ksize))

    def params(self):
        return {"ksize": self.ksize}

    def forward(self, x, *, generator=None):
        _check(x, self.name)
        # reflect padding needs pad < size: use replicate-free separable blur on a padded copy
        k = self.kernel
        p = k.numel() // 2
        if p >= x.shape[-1]:
            raise ValueError(f"{self.name}: kernel {self.ksize} too large for {x.shape[-1]}px images")
        return -blur(x, k)
