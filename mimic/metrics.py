"""Image-quality metrics, one value per image, and the intervals the benches report.

Inputs are float tensors (N, C, H, W) in [-1, 1] (the engine's convention) or
uint8 arrays (N, H, W, C); both are mapped to [0, 1] and compared with an
explicit ``data_range`` of 1.

SSIM is Wang et al.'s (2004): an 11x11 Gaussian window of sigma 1.5, population covariances, K1 = 0.01,
K2 = 0.03, averaged over the image and its channels (what the papers compared with report). Means get Student's t
interval (small n); proportions (accuracies) get the Wilson score interval, which is asymmetric and stays inside
[0, 1] (printed as [lo, hi], :func:`format_ci`).

:func:`sliced_wasserstein` is a distance between two *sets* of images that needs no downloaded network: Karras et
al.'s (2018) sliced Wasserstein distance on Laplacian-pyramid patches.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["psnr", "ssim", "mse", "mean_ci95", "proportion_ci95", "format_ci", "sliced_wasserstein",
           "laplacian_pyramid", "SSIM_SETTINGS", "SSIM_WINDOW"]

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


#: the 5x5 binomial kernel of Burt and Adelson's pyramid (what cv2.pyrDown / pyrUp and Karras et al. use)
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64)


def _blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """x (N, C, H, W) filtered by the 5x5 binomial kernel times ``gain``, mirrored at the borders."""
    k = torch.outer(_BINOMIAL, _BINOMIAL) / 256.0 * gain
    c = x.shape[1]
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect"),
                                      k.to(x.dtype).expand(c, 1, 5, 5), groups=c)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid of images ``x`` (N, C, H, W): ``levels`` tensors, the finest (H x W, band-pass) first, the
    last the low-pass residual at H / 2**(levels - 1). Karras et al.'s (2018) construction: down = binomial blur then
    every other pixel; up = zeros between the pixels then 4 x the blur."""
    pyr = [x]
    for _ in range(1, levels):
        if min(pyr[-1].shape[-2:]) < 4:
            raise ValueError(f"levels={levels} halves {tuple(x.shape[-2:])} images below 4 pixels")
        down = _blur(pyr[-1])[..., ::2, ::2]
        up = torch.zeros_like(pyr[-1])
        up[..., ::2, ::2] = down
        pyr[-1] = pyr[-1] - _blur(up, 4.0)
        pyr.append(down)
    return pyr


def _patches(x: torch.Tensor, size: int, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """``per_image`` random ``size`` x ``size`` neighbourhoods of each image of x (N, C, H, W), drawn uniformly among
    the positions where they fit: (N * per_image, C, size, size)."""
    n, c, h, w = x.shape
    if h < size or w < size:
        raise ValueError(f"patch size {size} does not fit a {h}x{w} pyramid level")
    ys = torch.randint(0, h - size + 1, (n * per_image,), generator=generator)
    xs = torch.randint(0, w - size + 1, (n * per_image,), generator=generator)
    img = torch.arange(n).repeat_interleave(per_image)
    r = torch.arange(size)
    rows = (ys[:, None] + r)[:, :, None]  # (P, size, 1)
    cols = (xs[:, None] + r)[:, None, :]  # (P, 1, size)
    return x[img[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (P, size, size, C) -> (P, C, size, size)


def sliced_wasserstein(real, fake, *, generator: torch.Generator, levels: int = 3, patch: int = 7,
                       patches_per_image: int = 128, projections: int = 512, repeats: int = 4) -> np.ndarray:
    """Sliced Wasserstein distance between two sets of images on Laplacian-pyramid patches, per pyramid level.

    Karras et al. (2018, "Progressive Growing of GANs", appendix D): each image is decomposed into a Laplacian
    pyramid (:func:`laplacian_pyramid`; 3 levels of 64, 32 and 16 pixels for 64x64 images, the finest first);
    from each level ``patches_per_image`` random ``patch`` x ``patch`` neighbourhoods are drawn per image, each
    channel normalised by the level's mean and standard deviation over the *real* set's patches (Karras et al.
    normalise each set by its own statistics, which hides a shift of a level's mean or contrast between the sets);
    the distance of the two sets of patch vectors is the mean over random unit directions (``projections`` per
    repetition, ``repeats`` repetitions) of the 1-D Wasserstein-1 distance of their projections (sorted values
    paired). Multiply by 1e3 for the figures the paper reports.

    Parameters
    ----------
    real, fake : uint8 array (N, H, W, C) or float tensor (N, C, H, W) in [-1, 1]
        The two sets, of the same number of images and the same size.
    generator : torch.Generator
        Draws the patch positions (the real set's, then the fake set's, per level) and the directions: the same seed
        gives the same distances.
    levels, patch, patches_per_image, projections, repeats : int
        The pyramid's levels, the neighbourhood size, neighbourhoods per image and level, directions per repetition
        and repetitions.

    Returns
    -------
    ndarray (levels,)
        The distance at each level, the finest first (their mean is the paper's average).
    """
    for name, v in (("levels", levels), ("patch", patch), ("patches_per_image", patches_per_image),
                    ("projections", projections), ("repeats", repeats)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    a = torch.from_numpy(_to01(real)).permute(0, 3, 1, 2).float()
    b = torch.from_numpy(_to01(fake)).permute(0, 3, 1, 2).float()
    if a.shape != b.shape:
        raise ValueError(f"real and fake must have the same shape (images, size, channels): {tuple(a.shape)} vs "
                         f"{tuple(b.shape)}")
    out = []
    for la, lb in zip(laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)):
        pa = _patches(la, patch, patches_per_image, generator)
        pb = _patches(lb, patch, patches_per_image, generator)
        mean = pa.mean(dim=(0, 2, 3), keepdim=True)
        std = pa.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
        pa, pb = ((pa - mean) / std).flatten(1), ((pb - mean) / std).flatten(1)
        dists = []
        for _ in range(repeats):
            d = torch.randn(pa.shape[1], projections, generator=generator)
            d = d / d.norm(dim=0, keepdim=True)
            # numpy's sort: several times faster than torch's on a CPU for these (patches x directions) arrays
            sa, sb = np.sort((pa @ d).numpy(), axis=0), np.sort((pb @ d).numpy(), axis=0)
            dists.append(float(np.abs(sa - sb).mean(dtype=np.float64)))
        out.append(float(np.mean(dists)))
    return np.array(out)
