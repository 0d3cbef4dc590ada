"""Corruption operators and their registry.

A corruption is an ``nn.Module``: ``y = corruption(x, generator=g)`` with ``x`` a float
tensor (N, C, H, W) in [-1, 1] and ``y`` a float tensor (N, C_obs, H, W) in [-1, 1].
Fixed parameters (kernels, masks) are buffers, so ``.to(device)`` works. Random
parts (noise, random masks) are drawn on the CPU from ``generator`` and then moved
to ``x``'s device, so a seed gives the same observation on every device.
"""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

__all__ = [
    "Corruption",
    "register_corruption",
    "list_corruptions",
    "get_corruption",
    "gaussian_kernel",
    "blur",
    "quantize8",
    "randn",
    "rand",
]

_CORRUPTIONS = Registry("corruption")


class Corruption(nn.Module):
    """Base class. Subclasses implement :meth:`forward`.

    Attributes
    ----------
    name : str
        Registry name.
    differentiable : bool
        Whether gradients flow from ``y`` to ``x`` (used by the oracle baseline;
        non-differentiable parts use straight-through gradients where possible).
    """

    name: str = "corruption"
    differentiable: bool = True
    domain: str = "any"  # "celeba" (64x64 RGB), "fmnist" (28x28 gray) or "any"

    def out_channels(self, in_channels: int) -> int:
        """Channel count of the observation for an input of ``in_channels``."""
        return in_channels

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def known_mask(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """Where the corruption keeps pixels informative (1) vs destroys them (0), if known.

        Used only by non-blind baselines (oracle, biharmonic inpainting, masked DIP).
        Shape broadcastable to ``y``. ``None`` when the corruption destroys no pixel.
        """
        return None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items())

    def params(self) -> dict:
        """The corruption's settings, for reports."""
        return {}


def register_corruption(name: str):
    """Class decorator that registers a corruption under ``name``."""

    def deco(cls):
        cls.name = name
        return _CORRUPTIONS.register(name, cls)

    return deco


def list_corruptions(domain: str | None = None) -> list[str]:
    """Registered corruption names (optionally only those of one domain)."""
    return [k for k, v in _CORRUPTIONS.items() if domain is None or v.domain in (domain, "any")]


def get_corruption(name_or_obj, **kwargs) -> Corruption:
    """A corruption by registry name (with keyword settings), or the object itself."""
    return _CORRUPTIONS.get(name_or_obj, instance_of=nn.Module, build=lambda cls, **kw: cls(**kw), **kwargs)


# ---- helpers ---------------------------------------------------------------------------------

def gaussian_kernel(ksize: int, sigma: float = 0.0) -> torch.Tensor:
    """1-D Gaussian kernel as OpenCV's ``getGaussianKernel`` (sigma <= 0: derived from ksize)."""
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    r = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(r**2) / (2 * sigma**2))
    return (k / k.sum()).float()


def blur(x: torch.Tensor, k1d: torch.Tensor) -> torch.Tensor:
    """Separable blur of (N, C, H, W) with a 1-D kernel, reflect-101 borders (OpenCV's default)."""
    n, c, h, w = x.shape
    k = k1d.to(x)
    p = k.numel() // 2
    y = x.reshape(n * c, 1, h, w)  # (N*C, 1, H, W)
    y = F.conv2d(F.pad(y, (p, p, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, p, p), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def quantize8(x: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] values to the 8-bit grid, with a straight-through gradient."""
    q = torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
    return x + (q - x).detach()


def randn(shape, generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn on the CPU from ``generator``, moved to ``like``'s device/dtype."""
    return torch.randn(shape, generator=generator).to(like)


def rand(shape, generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) noise drawn on the CPU from ``generator``, moved to ``like``'s device/dtype."""
    return torch.rand(shape, generator=generator).to(like)


def _check(x: torch.Tensor, name: str, channels: int | None = None):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels, got {x.shape[1]}")
