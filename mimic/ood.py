"""Out-of-prior warning: does a recovery explain its observation, or did the prior make up a face?

A recovery is always an image the generator can produce, so anything (a coffee cup, a page of text, noise) comes
out as a face, often with a lower observation loss than a real face: the surrogate and the latent code together fit
a lot. What they fit less well is *where the edges are*: for a face observation, however corrupted (blurred,
grayscale, negated, stylised, partly occluded, most pixels removed), the eyes, nose, mouth and outline of the
recovery, passed through the learned corruption (``Recovery.mimicked``, f(G(z))), sit on the observation's own;
for an image the prior cannot represent, mostly they do not.

:func:`face_score` measures that: the correlation between the gradient fields (both components) of the observation
and of f(G(z)), smoothed a little, in gray, sign-free (a negated observation is a face), with the pixels detected as
a constant fill (``mimic.imageops.fill_mask``) left out of both by normalised convolution. It needs no clean
reference and no prior, only what a recovery already has, and costs about a millisecond per 64x64 image on one
CPU thread. :func:`out_of_prior` compares it with :data:`THRESHOLD`.

Measured (``experiments/ood_roc.py``; ``celeba64``; blind preset with a short schedule, groups of 25 of one kind;
choose / check halves): ROC AUC 0.97 between faces (50 validation faces, clean and under each of the ten face
corruptions) and 157 non-faces (scikit-image's sample images and crops of them, flat, ramp and noise images). At
:data:`THRESHOLD`, chosen on the choose half so that no face of any kind fell below it, the check half had 1 false
warning in 283 faces (an occluded face; 1 of 25 occlusion observations) and flagged 68% of its 78 non-faces. The misses
are mostly images with a few strong edges a face can be laid along: binary shapes, checkerboards, the Shepp-Logan
head phantom, ramps, the cameraman.

Limits: the score was calibrated for groups of 25 observations sharing one surrogate. A group's surrogate adapts to
its images, the more so the smaller the group: of the 24 scikit-image centre crops, 14 were flagged in groups of 25
but only 8 when each was recovered alone (``batch_size=1``; the coffee cup then scored 0.46, the rocket 0.26), while
faces recovered alone still scored at least 0.41 (clean and occluded). The warning is a hint for a folder of mostly
faces, not a guarantee for one image. The threshold is for ``celeba64`` at 64x64 (``SIGMA`` is in its pixels);
another prior needs its own measurement.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .imageops import fill_mask
from .io import to_tensor

__all__ = ["face_score", "out_of_prior", "threshold_for", "THRESHOLD", "THRESHOLDS", "SIGMA"]

#: Gaussian smoothing (pixels, at the prior's resolution) before the gradients: it damps the noise many corruptions
#: add and fills the holes of removed pixels; of 0.5 to 3, the one that flagged most non-faces on the choose half
#: (tied with 0.5, higher AUC).
SIGMA = 0.75

#: Scores below this warn (``celeba64``): the lowest face score of the choose half in ``experiments/ood_roc.py``.
THRESHOLD = 0.319

#: Priors whose threshold was measured (prior name -> threshold); :func:`threshold_for` gives None for any other, and
#: the folder runner and :func:`mimic.recover` then record no score and warn about nothing.
THRESHOLDS = {"celeba64": THRESHOLD}


def _as_list(images, what: str) -> list:
    """list of uint8 (R, R[, C]) arrays | uint8 (N, R, R[, C]) | float Tensor (N, C, R, R) in [-1, 1] -> list of float
    (C, R, R) tensors in [-1, 1] (a list may mix channel counts, as ``Recovery.observed`` does)."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"{what}: a tensor (N, C, R, R) expected, got shape {tuple(images.shape)}")
        return list(images.detach().float().cpu())
    if isinstance(images, (list, tuple)):
        out = []
        for a in images:
            if isinstance(a, torch.Tensor) and a.ndim == 3:
                out.append(a.detach().float().cpu())
            else:
                out += _as_list(np.asarray(a)[None], what)
        return out
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"{what}: uint8 arrays (N, R, R, C) or a float tensor (N, C, R, R) expected, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"{what}: uint8 images (N, R, R, C) expected, got shape {arr.shape}")
    return list(to_tensor(arr))


def _gauss_blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with zero padding (what normalised convolution needs)."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=t.dtype) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    c = t.shape[1]
    t = F.conv2d(t, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(t, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def _grad_field(t: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 2 (H-2) (W-2)): central differences along x and y."""
    gx = t[..., 1:-1, 2:] - t[..., 1:-1, :-2]
    gy = t[..., 2:, 1:-1] - t[..., :-2, 1:-1]
    return torch.cat([gx.flatten(1), gy.flatten(1)], 1)


def face_score(observed, mimicked, *, sigma: float = SIGMA) -> np.ndarray:
    """How well each observation's edges line up with those of what its recovery says was observed: high for faces
    (however corrupted), low for what the prior cannot represent.

    Parameters
    ----------
    observed : list of uint8 (R, R, C_obs) arrays | uint8 ndarray (N, R, R, C_obs) | float Tensor (N, C_obs, R, R)
        in [-1, 1]
        The observations as recovered (``Recovery.observed``); ``C_obs`` in {1, 3}.
    mimicked : same forms, (N, R, R, C) uint8 or (N, C, R, R) float in [-1, 1]
        The surrogate applied to each recovery, f(G(z)) (``Recovery.mimicked``): what :data:`THRESHOLD` was chosen
        for. The recovery itself (``Recovery.tensor`` or ``.images``) also works, but scores lower (it lacks the
        corruption's blur, negation or stylisation), so its threshold would be lower.
        A channel count other than the observation's is compared in gray.
    sigma : float
        Gaussian smoothing in pixels before the gradients (:data:`SIGMA`, what :data:`THRESHOLD` was chosen for).

    Returns
    -------
    ndarray float64 (N,)
        In [0, 1]: the absolute Pearson correlation between the gradient fields (x and y components together) of
        the observation and of ``mimicked``, both reduced to gray after leaving out the observation's fill pixels
        (normalised convolution with the Gaussian). 1: the same edges up to an affine change of intensity (a
        negation included); 0: unrelated, or no edges at all (a flat observation). Below :data:`THRESHOLD`: warn
        (:func:`out_of_prior`).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    ys, xs = _as_list(observed, "observed"), _as_list(mimicked, "mimicked")
    if len(ys) != len(xs):
        raise ValueError(f"{len(ys)} observations but {len(xs)} mimicked images")
    out = np.zeros(len(ys))
    kinds: dict = {}  # (observation shape, mimicked shape) -> indices, scored as one batch
    for i, (y, x) in enumerate(zip(ys, xs)):
        if y.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"image {i}: observed {tuple(y.shape)} and mimicked {tuple(x.shape)} differ in size")
        kinds.setdefault((tuple(y.shape), tuple(x.shape)), []).append(i)
    for idx in kinds.values():
        out[idx] = _score(torch.stack([ys[i] for i in idx]), torch.stack([xs[i] for i in idx]), sigma)
    return out


def _score(y: torch.Tensor, x: torch.Tensor, sigma: float) -> np.ndarray:
    """face_score of a batch: y (N, C_obs, R, R), x (N, C, R, R), floats in [-1, 1]."""
    if y.shape[1] != x.shape[1]:  # a gray observation of a colour recovery (or the reverse): compare in gray
        y, x = y.mean(1, keepdim=True), x.mean(1, keepdim=True)
    m = fill_mask(y)
    m = torch.ones_like(y) if m is None else m
    with torch.no_grad():
        den = _gauss_blur(m, sigma).clamp_min(1e-6)
        ys = (_gauss_blur(y * m, sigma) / den).mean(1, keepdim=True)  # (N, 1, R, R)
        xs = (_gauss_blur(x * m, sigma) / den).mean(1, keepdim=True)
        a, b = _grad_field(ys), _grad_field(xs)
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        na, nb = a.norm(dim=1), b.norm(dim=1)
        r = (a * b).sum(1) / (na * nb).clamp_min(1e-12)
        # no edges at all (a flat image; 1e-4 rms is far below one 8-bit step): nothing lines up
        r = torch.where(torch.minimum(na, nb) > 1e-4 * a.shape[1] ** 0.5, r, torch.zeros_like(r))
    return r.abs().double().numpy()


def out_of_prior(observed, mimicked, *, threshold: float = THRESHOLD, sigma: float = SIGMA) -> np.ndarray:
    """bool (N,): True where :func:`face_score` is below ``threshold`` (the recovery probably made up a face)."""
    return face_score(observed, mimicked, sigma=sigma) < threshold


def threshold_for(prior) -> float | None:
    """The face-score threshold of a prior (a name or a loaded ``Prior``), or None where none was measured.

    A loaded prior counts as a measured one only with the weights the measurement was made on: where a prior of that
    name is shipped, its generator's sha256 must be the shipped card's (a prior retrained into a folder of the same
    name needs its own measurement)."""
    name = getattr(prior, "name", prior)
    t = THRESHOLDS.get(str(name))
    if t is None or not hasattr(prior, "sha256"):
        return t
    import json

    from .priors import pretrained_dir

    card = pretrained_dir() / str(name) / "card.json"
    try:
        ref = json.loads(card.read_text()).get("sha256", {}).get("generator.safetensors")
    except (OSError, ValueError, AttributeError):
        ref = None
    if ref is not None and (prior.sha256 or {}).get("generator.safetensors") != ref:
        return None
    return t
