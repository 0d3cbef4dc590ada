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
from ..reconstructor import ImageToImageNet

__all__ = ["SupervisedNet", "train_supervised", "apply_supervised"]


#: the reference's network: the trained reconstructors' small U-Net (``mimic.reconstructor``), not residual
SupervisedNet = ImageToImageNet


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
