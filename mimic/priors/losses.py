"""GAN training losses of the prior trainer, in one place.

Each loss is a pair of small functions of the discriminator's outputs (one per image, shape (N,)):
``d_loss(kind, real_logits, fake_logits)`` (what D minimises) and ``g_loss(kind, fake_logits)`` (what G
minimises). ``list_losses()`` names them:

- ``"dcgan"``: the non-saturating GAN (Goodfellow et al. 2014; Radford et al. 2016): D the binary cross-entropy
  of real = 1, fake = 0 on its logits, G the cross-entropy of fake = 1.
- ``"lsgan"``: least squares (Mao et al. 2017): D ½(D(real) - 1)² + ½D(fake)², G ½(D(fake) - 1)².
- ``"wgan-gp"``: Wasserstein with gradient penalty (Gulrajani et al. 2017): the critic D(fake) - D(real)
  + 10 · (‖∇D(x̂)‖₂ - 1)² on random interpolates x̂ of real and fake images (:func:`gradient_penalty`, added by the
  trainer: :data:`GP_WEIGHT`), G -D(fake). The penalty is per image, so D must not use batch norm.
- ``"hinge"``: hinge (Miyato et al. 2018; Zhang et al. 2019, SAGAN): D relu(1 - D(real)) + relu(1 + D(fake)),
  G -D(fake).

Every term is a mean over the batch.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["list_losses", "d_loss", "g_loss", "gradient_penalty", "GP_WEIGHT"]

#: weight of the gradient penalty of each loss that has one (Gulrajani et al. 2017's lambda = 10)
GP_WEIGHT = {"wgan-gp": 10.0}


def _dcgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
        F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def _dcgan_g(fake: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))  # non-saturating


def _lsgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))


def _lsgan_g(fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * F.mse_loss(fake, torch.ones_like(fake))


def _wgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return fake.mean() - real.mean()  # the gradient penalty is added by the caller (it needs D and the images)


def _hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def _neg_mean_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


# name -> (D's loss, G's loss), in the order list_losses() gives
_LOSSES: dict[str, tuple[Callable, Callable]] = {
    "dcgan": (_dcgan_d, _dcgan_g),
    "lsgan": (_lsgan_d, _lsgan_g),
    "wgan-gp": (_wgan_d, _neg_mean_g),
    "hinge": (_hinge_d, _neg_mean_g),
}


def list_losses() -> list[str]:
    """Names of the GAN losses (``TrainConfig.loss``), the default (``"dcgan"``) first."""
    return list(_LOSSES)


def _get(kind: str) -> tuple[Callable, Callable]:
    if kind not in _LOSSES:
        raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(_LOSSES)}")
    return _LOSSES[kind]


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's (critic's) loss, a scalar to minimise.

    Parameters
    ----------
    kind : str
        A name of :func:`list_losses`.
    real_logits, fake_logits : Tensor (N,)
        D's outputs on real and on generated images.

    Returns
    -------
    Tensor
        A scalar; for ``"wgan-gp"`` without the gradient penalty (:func:`gradient_penalty`).
    """
    return _get(kind)[0](real_logits, fake_logits)


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss, a scalar to minimise, from D's outputs ``fake_logits`` (N,) on generated images.

    Parameters
    ----------
    kind : str
        A name of :func:`list_losses`.
    fake_logits : Tensor (N,)
    """
    return _get(kind)[1](fake_logits)


def gradient_penalty(D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Gulrajani et al. 2017's penalty: mean over the batch of (‖∇ₓ D(x̂)‖₂ - 1)², x̂ = ε·real + (1 - ε)·fake.

    Parameters
    ----------
    D : nn.Module
        Images (N, C, H, W) -> outputs (N,). Without batch norm (the penalty is per image).
    real, fake : Tensor (N, C, H, W)
        ``fake`` detached from G.
    generator : torch.Generator, optional
        Draws ε ~ U(0, 1), one per image, on the CPU (then moved to the images' device).

    Returns
    -------
    Tensor
        A scalar with a graph through D's weights (backward twice).
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
