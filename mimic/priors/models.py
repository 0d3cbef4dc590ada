"""Network architectures of the shipped priors.

All generators map a latent code ``z`` of shape (N, nz) with values in [-1, 1]
to images of shape (N, C, H, W) with values in [-1, 1] (float32). All
discriminators return one *logit* per image, shape (N,).

The DCGAN layouts are the defaults; the discriminators also build with layer norm or no norm in place of batch
norm (``norm``, for the WGAN-GP loss, whose gradient penalty is per image) and with spectral norm on every
convolution and linear layer (``spectral_norm``); the ``dcgan64`` networks also build with a SAGAN self-attention
block at 32x32 (``attention``). :func:`build_gan` builds a generator and discriminator pair from these settings
(what training, export and ``load_prior`` share).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..registry import Registry

__all__ = [
    "DCGAN64Generator",
    "DCGAN64Discriminator",
    "FMNIST28Generator",
    "FMNIST28Discriminator",
    "FMNISTClassifier",
    "SelfAttention",
    "ARCHS",
    "D_NORMS",
    "build_gan",
    "init_dcgan_weights",
]

#: normalisation layers a discriminator can be built with: batch norm (DCGAN), layer norm (GroupNorm with one group
#: on feature maps: each image normalised over its channels and positions, with a per-channel scale and shift;
#: LayerNorm on feature vectors), or none
D_NORMS = ("batch", "layer", "none")


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), BN weights N(1, 0.02), biases 0.

    A spectrally normalised weight gets the N(0, 0.02) draw in its unnormalised original, and its power iteration
    restarts from the new weight. Layer norms keep PyTorch's scale 1, shift 0; a self-attention block's gamma stays 0.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            sn = parametrize.is_parametrized(m, "weight")
            w = m.parametrizations.weight.original if sn else m.weight
            nn.init.normal_(w, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            if sn:
                for par in m.parametrizations.weight:
                    if hasattr(par, "_power_method"):  # spectral norm: u, v fitted to the new weight, as at creation
                        par._power_method(par._reshape_weight_to_matrix(w.detach()), 15)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _check_norm(norm: str) -> None:
    if norm not in D_NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(D_NORMS)}")


def _norm2d(norm: str, c: int) -> nn.Module:
    """Normalisation of (N, c, H, W) feature maps (``D_NORMS``)."""
    return {"batch": nn.BatchNorm2d, "layer": lambda n: nn.GroupNorm(1, n), "none": lambda n: nn.Identity()}[norm](c)


def _norm1d(norm: str, c: int) -> nn.Module:
    """Normalisation of (N, c) feature vectors (``D_NORMS``)."""
    return {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "none": lambda n: nn.Identity()}[norm](c)


def _spectral_norm_all(module: nn.Module) -> None:
    """Spectral norm (one power iteration per training forward) on every convolution and linear layer."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(m)


def _no_attention(arch: str, attention: bool) -> None:
    if attention:
        raise ValueError(f"attention is only built for arch 'dcgan64' (at 32x32), not {arch!r}")


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019): ``x + gamma * attention(x)``, gamma learned and started at 0.

    Query and key are 1x1 convolutions to ``channels // 8`` channels, value a 1x1 convolution to ``channels``;
    every position attends to every position (softmax over positions of query . key). Input and output (N, C, H, W).
    """

    def __init__(self, channels: int):
        super().__init__()
        k = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, k, 1)
        self.key = nn.Conv2d(channels, k, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).reshape(n, -1, h * w)  # (N, k, HW)
        k = self.key(x).reshape(n, -1, h * w)  # (N, k, HW)
        v = self.value(x).reshape(n, c, h * w)  # (N, C, HW)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (N, HW, HW): row i = weights of the positions i reads
        out = (v @ attn.transpose(1, 2)).reshape(n, c, h, w)  # (N, C, HW) -> (N, C, H, W)
        return x + self.gamma * out


class DCGAN64Generator(nn.Module):
    """PyTorch reference DCGAN generator (4x4 kernels, depths 512-256-128-64), 64x64 RGB.

    Parameters
    ----------
    nz : int
        Latent dimensions.
    ngf : int
        Width: the depths are 8, 4, 2 and 1 times ``ngf``.
    nc : int
        Image channels.
    attention : bool
        A :class:`SelfAttention` block on the 32x32 feature maps (after their ReLU).
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, *, attention: bool = False):
        super().__init__()
        self.nz, self.nc, self.resolution = nz, nc, 64
        layers = [
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),  # (N, 512, 4, 4)
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),  # (N, 256, 8, 8)
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),  # (N, 128, 16, 16)
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),  # (N, 64, 32, 32)
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
        ]
        if attention:  # net.12; without it the layer indices (the state dict's keys) are the DCGAN's
            layers.append(SelfAttention(ngf))
        layers += [
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # (N, 3, 64, 64)
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.nz, 1, 1))  # (N, nz) -> (N, nz, 1, 1)


class DCGAN64Discriminator(nn.Module):
    """PyTorch reference DCGAN discriminator, 64x64 input, one logit per image.

    Parameters
    ----------
    ndf : int
        Width: the depths are 1, 2, 4 and 8 times ``ndf``.
    nc : int
        Image channels.
    norm : {"batch", "layer", "none"}
        Normalisation after the 2nd to 4th convolutions (``D_NORMS``); "batch" is the DCGAN's.
    spectral_norm : bool
        Spectral norm on every convolution (those of the attention block too).
    attention : bool
        A :class:`SelfAttention` block on the 32x32 feature maps (after the first LeakyReLU).
    """

    def __init__(self, ndf: int = 64, nc: int = 3, *, norm: str = "batch", spectral_norm: bool = False,
                 attention: bool = False):
        super().__init__()
        _check_norm(norm)
        layers = [
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # (N, 64, 32, 32)
            nn.LeakyReLU(0.2, True),
        ]
        if attention:  # net.2; without it the layer indices (the state dict's keys) are the DCGAN's
            layers.append(SelfAttention(ndf))
        layers += [
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # (N, 128, 16, 16)
            _norm2d(norm, ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # (N, 256, 8, 8)
            _norm2d(norm, ndf * 4),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),  # (N, 512, 4, 4)
            _norm2d(norm, ndf * 8),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # (N, 1, 1, 1)
        ]
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            _spectral_norm_all(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])


class FMNIST28Generator(nn.Module):
    """The MimicGAN paper's Fashion-MNIST generator, 28x28x1 in [-1, 1].

    ``attention=True`` is refused (a one-line ValueError): the self-attention block is only built for dcgan64.
    """

    def __init__(self, nz: int = 100, *, attention: bool = False):
        super().__init__()
        _no_attention("fmnist28", attention)
        self.nz, self.nc, self.resolution = nz, 1, 28
        # the paper lists FC+ReLU+BN; batch norm goes before the activation, as in the reference TensorFlow
        # DCGAN code the paper builds on (relu(bn(linear(x)))), see FMNIST28Discriminator for why it matters
        self.fc = nn.Sequential(
            nn.Linear(nz, 1024), nn.BatchNorm1d(1024), nn.ReLU(True),
            nn.Linear(1024, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(True),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(True),  # (N, 64, 14, 14)
            nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),  # (N, 1, 28, 28)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).reshape(z.shape[0], 128, 7, 7)  # (N, 6272) -> (N, 128, 7, 7)
        return self.deconv(h)


class FMNIST28Discriminator(nn.Module):
    """The MimicGAN paper's Fashion-MNIST discriminator, one logit per image.

    Parameters
    ----------
    norm : {"batch", "layer", "none"}
        Normalisation after the hidden layers (``D_NORMS``); "batch" is the paper's.
    spectral_norm : bool
        Spectral norm on every convolution and linear layer.
    attention : bool
        Refused (a one-line ValueError): the self-attention block is only built for dcgan64.
    """

    def __init__(self, *, norm: str = "batch", spectral_norm: bool = False, attention: bool = False):
        super().__init__()
        _check_norm(norm)
        _no_attention("fmnist28", attention)
        self.conv = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1), _norm2d(norm, 64), nn.LeakyReLU(0.2, True),  # (N, 64, 14, 14)
            nn.Conv2d(64, 128, 4, 2, 1), _norm2d(norm, 128), nn.LeakyReLU(0.2, True),  # (N, 128, 7, 7)
        )
        # batch norm before the activation (lrelu(bn(linear(x)))), as in the reference TensorFlow DCGAN code.
        # Taken literally (LeakyReLU, then BN, then the final linear layer), the mean logit over any batch is
        # w . beta + b whatever the images, so D cannot tell a real batch from a fake one: measured here, the
        # losses sat at 2 log 2 and log 2 for two epochs and G produced noise.
        self.fc = nn.Sequential(
            nn.Linear(128 * 7 * 7, 1024), _norm1d(norm, 1024), nn.LeakyReLU(0.2, True),
            nn.Linear(1024, 1),
        )
        if spectral_norm:
            _spectral_norm_all(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).reshape(x.shape[0], 128 * 7 * 7)  # (N, 128, 7, 7) -> (N, 6272)
        return self.fc(h).reshape(x.shape[0])


class FMNISTClassifier(nn.Module):
    """A small CNN for Fashion-MNIST. Input (N, 1, 28, 28) in [-1, 1]; output (N, 10) logits."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.MaxPool2d(2),  # (N, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.MaxPool2d(2),  # (N, 64, 7, 7)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 256), nn.ReLU(True),
            nn.Dropout(0.3), nn.Linear(256, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# arch name -> (generator class, discriminator class, channels, resolution)
ARCHS = Registry("prior architecture")
ARCHS.register("dcgan64", (DCGAN64Generator, DCGAN64Discriminator, 3, 64))
ARCHS.register("fmnist28", (FMNIST28Generator, FMNIST28Discriminator, 1, 28))


def build_gan(arch: str, *, nz: int = 100, ngf: int = 64, ndf: int = 64, d_norm: str = "batch",
              spectral_norm: bool = False, attention: bool = False) -> tuple[nn.Module, nn.Module]:
    """A generator and a discriminator of ``arch`` (``ARCHS``), built with the given settings (G first).

    Parameters
    ----------
    arch : str
        A name of ``ARCHS``.
    nz : int
        Latent dimensions.
    ngf, ndf : int
        Widths of G and D (dcgan64 only; fmnist28 has the paper's fixed widths and takes only 64, the default).
    d_norm : {"batch", "layer", "none"}
        D's normalisation (``D_NORMS``).
    spectral_norm : bool
        Spectral norm on every convolution and linear layer of D.
    attention : bool
        A self-attention block at 32x32 in G and in D (dcgan64 only).

    Returns
    -------
    (G, D) : tuple of nn.Module
        With PyTorch's initialisation (see :func:`init_dcgan_weights`).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    Gcls, Dcls, _, _ = ARCHS[arch]
    if arch != "dcgan64" and (ngf, ndf) != (64, 64):
        raise ValueError(f"ngf and ndf are only built for arch 'dcgan64' (must be 64 for {arch!r}), got {ngf}, {ndf}")
    _check_norm(d_norm)
    if arch != "dcgan64":
        _no_attention(arch, attention)
        return Gcls(nz=nz), Dcls(norm=d_norm, spectral_norm=spectral_norm)
    return (Gcls(nz=nz, ngf=ngf, attention=attention),
            Dcls(ndf=ndf, norm=d_norm, spectral_norm=spectral_norm, attention=attention))
