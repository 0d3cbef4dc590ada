"""Image-quality metrics, one value per image.

Inputs are float tensors (N, C, H, W) in [-1, 1] (the engine's convention) or
uint8 arrays (N, H, W, C); both are mapped to [0, 1] and compared with an
explicit ``data_range`` of 1.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["psnr", "ssim", "mse", "mean_ci95"]


def _to01(a) -> np.ndarray:
    """-> float64 (N, H, W, C) in [0, 1]."""
    if isinstance(a, torch.Tensor):
        a = a.detach().float().cpu()
        return ((a.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).double().numpy()
    a = np.asarray(a)
    if a.dtype == np.uint8:
        if a.ndim == 3:
            a = a[..., None]
        return a.astype(np.float64) / 255.0
    raise TypeError("expected a float tensor in [-1, 1] or a uint8 array")


def _pair(a, b):
    a, b = _to01(a), _to01(b)
    if a.shape[-1] != b.shape[-1]:  # compare gray with RGB by broadcasting the gray
        if a.shape[-1] == 1:
            a = np.repeat(a, b.shape[-1], -1)
        elif b.shape[-1] == 1:
            b = np.repeat(b, a.shape[-1], -1)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return a, b


def mse(a, b) -> np.ndarray:
    """Mean squared error per image on [0, 1], shape (N,)."""
    a, b = _pair(a, b)
    return ((a - b) ** 2).mean(axis=(1, 2, 3))


def psnr(a, b, *, data_range: float = 1.0) -> np.ndarray:
    """PSNR in dB per image (N,), on [0, 1] with ``data_range`` 1."""
    m = np.maximum(mse(a, b), 1e-12)
    return 10 * np.log10(data_range**2 / m)


def ssim(a, b, *, data_range: float = 1.0) -> np.ndarray:
    """SSIM per image (N,) (scikit-image, Gaussian-free 7x7 windows, channel axis last)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    return np.array([structural_similarity(x, y, data_range=data_range, channel_axis=-1) for x, y in zip(a, b)])


def mean_ci95(v) -> tuple[float, float]:
    """Mean and half-width of a normal-approximation 95% confidence interval."""
    v = np.asarray(v, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), float("nan")
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(v.size))
