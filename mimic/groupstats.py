"""Group statistics: what a group of clean images looks like as a set, for the blind mode's group term.

A corruption shared by a whole group (a colour cast, a veil, a tone curve, swapped channels) can be explained two
ways: by the surrogate f (the faces are right, f adds the damage), or by the faces themselves (G(z) reproduces the
damaged look, f stays at identity). A tinted or low-contrast face is still a plausible face, so nothing per image
tells the two apart. A *group* of 25 tinted faces is not plausible: 25 real faces have their own spread of colour
means, contrasts and channel correlations, and the group's average of them sits within a small, known distance of
the training faces' average. ``GroupStats`` holds that reference; the engine's group term (``MimicConfig.lam_group``)
charges a group of recoveries for the part of its distance that sampling 25 real faces would not explain, so that
what the group shares is pushed into the surrogate.

Per image (:func:`image_stats`, x (..., C, H, W) in [-1, 1] -> (..., D)): the channel means (C), the channel standard
deviations (C) and, for colour images, the channel correlations (R-G, R-B, G-B): D = 9 for RGB, 2 for gray. The
reference is the mean ``mu`` and covariance ``Sigma`` of these over a prior's training images. For a group of n
valid images with the average statistic s, ``q = (s - mu)^T Sigma^-1 (s - mu)``; n q is about chi-square with D
degrees of freedom for n real faces, so the tolerance ``chi2_D(0.99) / n`` is what sampling alone gives, and
:meth:`GroupStats.excess` returns ``max(0, q - tolerance)``.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["GroupStats", "image_stats", "fit_group_stats"]

EPS = 1e-4  # variance floor (flat images), in units of [-1, 1] squared


def image_stats(x: torch.Tensor) -> torch.Tensor:
    """Per-image statistics, differentiable.

    Parameters
    ----------
    x : torch.Tensor
        (..., C, H, W) float images in [-1, 1], C in {1, 3}.

    Returns
    -------
    torch.Tensor
        (..., D): channel means (C), channel standard deviations (C) and, for C = 3, the correlations of the channel
        pairs (0, 1), (0, 2), (1, 2). D = 9 for C = 3, 2 for C = 1.
    """
    C = x.shape[-3]
    m = x.mean(dim=(-2, -1))  # (..., C)
    xc = x - m[..., None, None]
    var = xc.square().mean(dim=(-2, -1)) + EPS  # (..., C)
    sd = var.sqrt()
    parts = [m, sd]
    if C == 3:
        for i, j in ((0, 1), (0, 2), (1, 2)):
            parts.append(((xc[..., i, :, :] * xc[..., j, :, :]).mean(dim=(-2, -1)) / (sd[..., i] * sd[..., j]))[..., None])
    elif C != 1:
        raise ValueError(f"image_stats: 1 or 3 channels expected, got {C}")
    return torch.cat(parts, dim=-1)


@dataclass
class GroupStats:
    """The reference statistics of a prior's training images (see the module docstring).

    mean : (D,) float tensor; cov : (D, D) float tensor (per image, not per group); channels : C;
    n_images : how many images they were measured on; source : where those came from.
    """

    mean: torch.Tensor
    cov: torch.Tensor
    channels: int
    n_images: int
    source: str = ""

    def __post_init__(self):
        self.mean = torch.as_tensor(self.mean, dtype=torch.float32)
        self.cov = torch.as_tensor(self.cov, dtype=torch.float32)
        D = self.mean.numel()
        if self.cov.shape != (D, D):
            raise ValueError(f"GroupStats: cov must be ({D}, {D}), got {tuple(self.cov.shape)}")
        # the precision, regularised by a small ridge (1e-3 of the mean variance) so that no direction is free
        ridge = 1e-3 * torch.diagonal(self.cov).mean()
        self.precision = torch.linalg.inv(self.cov + ridge * torch.eye(D))
        self.dim = D
        from scipy.stats import chi2

        self.q99 = float(chi2.ppf(0.99, D))  # the 0.99 quantile of chi2_D

    def to(self, device) -> "GroupStats":
        """A copy with its tensors on ``device`` (once per solve, not per step)."""
        new = copy.copy(self)
        new.mean, new.cov, new.precision = (t.to(device) for t in (self.mean, self.cov, self.precision))
        return new

    def distance(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """q per group: x (S, B, C, H, W) in [-1, 1], valid (S, B) (1 real, 0 padding) -> (S,) the Mahalanobis
        distance squared of the group's average statistic from the reference (per image units)."""
        s = image_stats(x)  # (S, B, D)
        w = torch.ones(s.shape[:2], device=s.device, dtype=s.dtype) if valid is None else valid.to(s)
        sbar = (s * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1)  # (S, D)
        d = sbar - self.mean
        return torch.einsum("sd,de,se->s", d, self.precision, d)

    def tolerance(self, n: torch.Tensor) -> torch.Tensor:
        """What sampling n real images gives (the 0.99 quantile of chi2_D / n), per group: n (S,) -> (S,)."""
        return self.q99 / n.clamp(min=1)

    def excess(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """max(0, q - tolerance) per group (S,): the part of the group's distance that sampling does not explain."""
        n = torch.full((x.shape[0],), float(x.shape[1]), device=x.device) if valid is None else valid.sum(1).to(x)
        return (self.distance(x, valid) - self.tolerance(n)).clamp(min=0)

    # --- round trip ---
    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist(), "channels": self.channels,
                "n_images": self.n_images, "source": self.source,
                "statistics": "per image: channel means, channel standard deviations"
                              + (", channel correlations (R-G, R-B, G-B)" if self.channels == 3 else "")
                              + "; images in [-1, 1]"}

    def save(self, path) -> None:
        from .io import save_json

        save_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path) -> "GroupStats":
        try:
            d = json.loads(Path(path).read_text())
            return cls(mean=d["mean"], cov=d["cov"], channels=int(d["channels"]), n_images=int(d["n_images"]),
                       source=d.get("source", ""))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a group statistics file ({e})") from None

    def __repr__(self) -> str:
        return f"GroupStats(channels={self.channels}, dim={self.dim}, n_images={self.n_images})"


def fit_group_stats(images, *, source: str = "", batch: int = 1000) -> GroupStats:
    """Reference statistics of clean images: uint8 (N, H, W[, C]) or a float tensor (N, C, H, W) in [-1, 1]."""
    from .io import to_tensor

    if isinstance(images, np.ndarray):
        arr = images if images.ndim == 4 else images[..., None]
        parts = [image_stats(to_tensor(arr[k : k + batch])) for k in range(0, len(arr), batch)]
    else:
        parts = [image_stats(images[k : k + batch].float()) for k in range(0, len(images), batch)]
    s = torch.cat(parts).double()
    if len(s) < 2 * s.shape[1]:
        raise ValueError(f"fit_group_stats: {len(s)} images are too few for {s.shape[1]} statistics")
    mu = s.mean(0)
    cov = torch.cov(s.T)
    C = 3 if s.shape[1] == 9 else 1
    if not math.isfinite(float(cov.sum())):
        raise ValueError("fit_group_stats: non-finite statistics")
    return GroupStats(mean=mu.float(), cov=cov.float(), channels=C, n_images=len(s), source=source)
