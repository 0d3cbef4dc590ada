"""Image-quality metrics, one value per image, and the intervals the benches report.

Inputs are float tensors (N, C, H, W) in [-1, 1] (the engine's convention) or
uint8 arrays (N, H, W, C); both are mapped to [0, 1] and compared with an
explicit ``data_range`` of 1.

SSIM is Wang et al.'s (2004): an 11x11 Gaussian window of sigma 1.5, population covariances, K1 = 0.01,
K2 = 0.03, averaged over the image and its channels (what the papers compared with report). Means get Student's t
interval (small n); proportions (accuracies) get the Wilson score interval, which is asymmetric and stays inside
[0, 1] (printed as [lo, hi], :func:`format_ci`).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["psnr", "ssim", "mse", "mean_ci95", "proportion_ci95", "format_ci", "SSIM_SETTINGS", "SSIM_WINDOW"]

#: scikit-image's structural_similarity settings that give Wang et al.'s SSIM
SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
#: how a result row records that its SSIM used :data:`SSIM_SETTINGS` (rows without it used scikit-image's
#: default 7x7 uniform window with sample covariances)
SSIM_WINDOW = "gaussian1.5"


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
    """SSIM per image (N,): Wang et al.'s Gaussian form (:data:`SSIM_SETTINGS`), channel axis last."""
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    return np.array([structural_similarity(x, y, data_range=data_range, channel_axis=-1, **SSIM_SETTINGS)
                     for x, y in zip(a, b)])


def mean_ci95(v) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (Student's t with n - 1 degrees of freedom)."""
    from scipy import stats

    v = np.asarray(v, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), float("nan")
    t = float(stats.t.ppf(0.975, v.size - 1))
    return float(v.mean()), float(t * v.std(ddof=1) / np.sqrt(v.size))


def proportion_ci95(successes, n: int | None = None) -> tuple[float, float, float]:
    """A proportion and its 95% Wilson score interval: ``(p, lo, hi)``, all in [0, 1].

    ``successes`` is a count (with ``n``) or a boolean array (``n`` its length). Unlike p +- 1.96 se, the interval
    is not centred on p and does not collapse at 0 or 1 (0 of 500: p = 0, interval [0, 0.0076])."""
    from scipy import stats

    if n is None:
        arr = np.asarray(successes, dtype=bool)
        k, n = int(arr.sum()), int(arr.size)
    else:
        k, n = int(successes), int(n)
    if n <= 0:
        return float("nan"), float("nan"), float("nan")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def format_ci(value: float, ci, digits: int = 2, *, scale: float = 1.0) -> str:
    """``"12.34 ± 0.56"`` for a symmetric interval (``ci`` a half-width), ``"0.0 [0.0, 0.8]"`` for an asymmetric one
    (``ci`` a pair (lo, hi)); ``scale`` multiplies all (100 for percent)."""
    if isinstance(ci, (tuple, list, np.ndarray)) and len(ci) == 2:
        lo, hi = (float(c) * scale for c in ci)
        return f"{value * scale:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    return f"{value * scale:.{digits}f} ± {float(ci) * scale:.{digits}f}"
