"""A supervised reference for the blind tasks (as in the MimicGAN paper).

For one task, a small image-to-image network is trained on (corrupted, clean) pairs made from the
prior's *training* faces with the task's registered corruption, with an L1 loss plus an adversarial
term (lam_adv = 1e-3, from the frozen prior's discriminator). The adversarial term is the
non-saturating -log D(out) = softplus(-logit), which is bounded below: the paper's
log(1 - D(out)) = -softplus(logit) is not, and a network trained through a fixed discriminator
learns to drive that logit up instead of restoring faces (with the epoch-26 celeba64 it cut
the gray_blur reference from about 20 to 16 dB). It sees the corruption thousands of times, so
it is not blind: it shows how close the unsupervised method comes to supervision on the same
held-out faces.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..corruptions import get_corruption
from ..io import to_tensor, to_uint8

__all__ = ["SupervisedNet", "train_supervised", "apply_supervised"]


class SupervisedNet(nn.Module):
    """A small encoder-decoder with a skip: (N, C_obs, 64, 64) -> (N, 3, 64, 64) in [-1, 1]."""

    def __init__(self, c_in: int, c_out: int = 3, width: int = 32):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(nn.Conv2d(c_in, w, 3, padding=1), nn.ReLU(True), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(True))
        self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(True), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(True))
        self.enc3 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.ReLU(True), nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(True))
        self.dec2 = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.ReLU(True))
        self.dec1 = nn.Sequential(nn.ConvTranspose2d(4 * w, w, 4, 2, 1), nn.ReLU(True))
        self.out = nn.Conv2d(2 * w, c_out, 3, padding=1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(y)  # (N, w, 64, 64)
        e2 = self.enc2(e1)  # (N, 2w, 32, 32)
        e3 = self.enc3(e2)  # (N, 4w, 16, 16)
        d2 = torch.cat([self.dec2(e3), e2], 1)  # (N, 4w, 32, 32)
        d1 = torch.cat([self.dec1(d2), e1], 1)  # (N, 2w, 64, 64)
        return torch.tanh(self.out(d1))


def train_supervised(task: str, prior, train_u8: np.ndarray, *, steps: int = 1500, batch_size: int = 32,
                     lr: float = 1e-3, lam_adv: float = 1e-3, seed: int = 0, device="cpu") -> tuple[nn.Module, dict]:
    """Train the reference network for ``task`` on clean training faces ``train_u8`` (N, 64, 64, 3) uint8."""
    from ..tasks import get_task

    corr = get_corruption(get_task(task).corruption)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    X = to_tensor(train_u8)  # (N, 3, 64, 64) in [-1, 1]
    c_obs = corr(X[:2], generator=torch.Generator().manual_seed(0)).shape[1]
    net = SupervisedNet(c_obs).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0 = time.perf_counter()
    hist = []
    for step in range(steps):
        idx = torch.randint(0, len(X), (batch_size,), generator=gen)
        x = X[idx]
        y = corr(x, generator=gen)  # fresh corruption draws every step
        x, y = x.to(device), y.to(device)
        out = net(y)
        loss = F.l1_loss(out, x)
        if lam_adv:
            loss = loss + lam_adv * F.softplus(-prior.D(out)).mean()  # -log D(out), >= 0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            hist.append({"step": step, "loss": float(loss.detach())})
    return net.eval(), {"steps": steps, "batch_size": batch_size, "lr": lr, "lam_adv": lam_adv, "n_train": len(X),
                        "seconds": time.perf_counter() - t0, "history": hist}


@torch.no_grad()
def apply_supervised(net: nn.Module, y_u8: np.ndarray, device="cpu", batch_size: int = 100) -> np.ndarray:
    """Recover uint8 observations (N, 64, 64, C_obs) with the trained network -> uint8 (N, 64, 64, 3)."""
    y = to_tensor(y_u8)
    out = [net(y[k : k + batch_size].to(device)).cpu() for k in range(0, len(y), batch_size)]
    return to_uint8(torch.cat(out))
