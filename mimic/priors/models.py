"""Network architectures of the shipped priors.

All generators map a latent code ``z`` of shape (N, nz) with values in [-1, 1]
to images of shape (N, C, H, W) with values in [-1, 1] (float32). All
discriminators return one *logit* per image, shape (N,).
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

__all__ = [
    "DCGAN64Generator",
    "DCGAN64Discriminator",
    "FMNIST28Generator",
    "FMNIST28Discriminator",
    "FMNISTClassifier",
    "ARCHS",
    "init_dcgan_weights",
]


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), BN weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGAN64Generator(nn.Module):
    """PyTorch reference DCGAN generator (4x4 kernels, depths 512-256-128-64), 64x64 RGB."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.nz, self.nc, self.resolution = nz, nc, 64
        self.net = nn.Sequential(
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
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # (N, 3, 64, 64)
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.nz, 1, 1))  # (N, nz) -> (N, nz, 1, 1)


class DCGAN64Discriminator(nn.Module):
    """PyTorch reference DCGAN discriminator, 64x64 input, one logit per image."""

    def __init__(self, ndf: int = 64, nc: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),  # (N, 64, 32, 32)
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),  # (N, 128, 16, 16)
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),  # (N, 256, 8, 8)
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),  # (N, 512, 4, 4)
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # (N, 1, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])


class FMNIST28Generator(nn.Module):
    """The MimicGAN paper's Fashion-MNIST generator, 28x28x1 in [-1, 1]."""

    def __init__(self, nz: int = 100):
        super().__init__()
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
    """The MimicGAN paper's Fashion-MNIST discriminator, one logit per image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.LeakyReLU(0.2, True),  # (N, 64, 14, 14)
            nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),  # (N, 128, 7, 7)
        )
        # batch norm before the activation (lrelu(bn(linear(x)))), as in the reference TensorFlow DCGAN code.
        # Taken literally (LeakyReLU, then BN, then the final linear layer), the mean logit over any batch is
        # w . beta + b whatever the images, so D cannot tell a real batch from a fake one: measured here, the
        # losses sat at 2 log 2 and log 2 for two epochs and G produced noise.
        self.fc = nn.Sequential(
            nn.Linear(128 * 7 * 7, 1024), nn.BatchNorm1d(1024), nn.LeakyReLU(0.2, True),
            nn.Linear(1024, 1),
        )

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
