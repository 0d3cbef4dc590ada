"""Corruption surrogates, batched over groups.

A surrogate ``f`` maps a clean estimate ``x = G(z)`` to an imitation of the
observation. The engine recovers many groups at once, each group with its own
surrogate, so every surrogate here holds its weights with a leading group axis S
and runs as grouped convolutions:

    f(x): x (S, B, C_in, H, W) in [-1, 1] -> (S, B, C_obs, H, W)

Kinds
-----
``paper``
    The MimicGAN paper's surrogate: Conv5x5(C_in->16)+ReLU, Conv5x5(16->16)+ReLU,
    Conv5x5(16->C_obs)+ReLU (TanH with ``last="tanh"``), an elementwise mask
    (C_obs, H, W) and TanH. Random (DCGAN) initialisation, mask at 1.
``gated``
    Starts at identity: ``f(x) = m * (A x + b + r(x))`` with ``A x + b`` a 1x1
    convolution (the affine colour path, initialised to identity, or to the channel
    mean for C_obs = 1 < C_in; ``negate`` flips it for the inverted-intensity start),
    ``r`` the paper's three 5x5 convolutions with the last one at zero, and ``m`` an
    elementwise mask (C_obs, H, W) at 1 that can switch destroyed regions off. Output
    clipped to [-1, 1]. With ``separable=True`` the affine path is followed by a learned
    separable linear spatial map ``P_h (A x + b) P_w^T`` (P_h: H x H over rows, P_w: W x W
    over columns, both at identity): it reaches what a 5x5 stack cannot, e.g. wide
    separable blurs, shifts, or columns copied from far away (stuck pixels).
``fmnist``
    The paper's Fashion-MNIST surrogate: Conv5x5(C_in->16)+ReLU, Conv5x5(16->C_obs)+ReLU,
    an elementwise mask, plus a learned elementwise weight W (C_obs, H, W) times the
    input (a skip connection, W at 1). Random initialisation of the convolutions.
``identity``
    No parameters: ``f(x) = x`` (plain GAN-prior inversion, PGD). A 1-channel
    observation is compared with every channel of ``x`` by broadcasting.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchedSurrogate", "make_surrogate", "SURROGATES"]

SURROGATES = ("gated", "paper", "fmnist", "identity")

#: On a CPU, run the S groups' convolutions as a loop of plain convolutions (grouped convolutions take
#: 3-4x longer there); elsewhere as one grouped convolution. Both give the same result.
CPU_LOOP = True


def _gconv(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, groups: int) -> torch.Tensor:
    """Grouped conv: h (B, S*Ci, H, W), w (S, Co, Ci, k, k), b (S, Co) -> (B, S*Co, H, W)."""
    s, co, ci, k, _ = w.shape
    return F.conv2d(h, w.reshape(s * co, ci, k, k), None if b is None else b.reshape(s * co),
                    padding=k // 2, groups=groups)


class BatchedSurrogate(nn.Module):
    """S independent surrogates evaluated together (see module docstring for the kinds).

    Parameters
    ----------
    kind : {"gated", "paper", "identity"}
    groups : int
        S, the number of independent surrogates.
    in_channels, out_channels : int
        C_in (the generator's channels) and C_obs (the observation's).
    size : int
        Image side (for the mask).
    last : {"relu", "tanh"}
        Activation of the paper surrogate's last convolution.
    hidden : int
        Width of the convolutions (16 in the paper).
    separable : bool
        Gated only: add the separable linear spatial map (P_h, P_w at identity) to the affine path.
    generator : torch.Generator, optional
        Seeds the random initialisation (drawn on the CPU).
    """

    def __init__(self, kind: str, groups: int, in_channels: int, out_channels: int, size: int, *,
                 last: str = "relu", hidden: int = 16, ksize: int = 5, separable: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        if kind not in SURROGATES:
            raise ValueError(f"unknown surrogate {kind!r}; valid: {', '.join(SURROGATES)}")
        self.kind, self.S, self.cin, self.cout, self.last = kind, groups, in_channels, out_channels, last
        if kind == "identity":
            return
        S, k, h = groups, ksize, hidden

        def w(co, ci):  # Glorot-uniform (TensorFlow's default), drawn group after group
            bound = math.sqrt(6.0 / ((ci + co) * k * k))
            return (torch.rand(co, ci, k, k, generator=generator) * 2 - 1) * bound

        # group s's initial weights do not depend on how many groups are batched with it
        ws = [(w(h, in_channels), w(h, h), w(out_channels, h)) for _ in range(S)] if kind != "fmnist" else None
        if kind == "fmnist":
            ws = [(w(h, in_channels), w(out_channels, h)) for _ in range(S)]
            self.w1, self.b1 = nn.Parameter(torch.stack([a for a, _ in ws])), nn.Parameter(torch.zeros(S, h))
            self.w2, self.b2 = nn.Parameter(torch.stack([b for _, b in ws])), nn.Parameter(torch.zeros(S, out_channels))
            self.mask = nn.Parameter(torch.ones(S, out_channels, size, size))
            self.skip = nn.Parameter(torch.ones(S, out_channels, size, size))
            return
        self.w1, self.b1 = nn.Parameter(torch.stack([a for a, _, _ in ws])), nn.Parameter(torch.zeros(S, h))
        self.w2, self.b2 = nn.Parameter(torch.stack([b for _, b, _ in ws])), nn.Parameter(torch.zeros(S, h))
        self.w3, self.b3 = nn.Parameter(torch.stack([c for _, _, c in ws])), nn.Parameter(torch.zeros(S, out_channels))
        self.mask = nn.Parameter(torch.ones(S, out_channels, size, size))
        if kind == "gated":
            with torch.no_grad():
                self.w3.zero_()
            A = torch.zeros(S, out_channels, in_channels)
            if out_channels == in_channels:
                A[:] = torch.eye(in_channels)
            else:
                A[:] = 1.0 / in_channels
            self.A = nn.Parameter(A)
            self.bA = nn.Parameter(torch.zeros(S, out_channels))
            if separable:
                self.Ph = nn.Parameter(torch.eye(size).repeat(S, 1, 1))  # (S, H, H): out row <- in rows
                self.Pw = nn.Parameter(torch.eye(size).repeat(S, 1, 1))  # (S, W, W): out column <- in columns
        elif separable:
            raise ValueError("separable=True needs the gated surrogate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S, B, C, H, W = x.shape
        if self.kind == "identity":
            return x
        layers = [(self.w1, self.b1), (self.w2, self.b2)] + ([(self.w3, self.b3)] if self.kind != "fmnist" else [])
        relu_last = self.kind == "fmnist"  # the fmnist stack ends in a ReLU; the others' last conv is linear here
        if CPU_LOOP and x.device.type == "cpu" and S > 1:
            # on a CPU, grouped convolutions take 3-4x a loop of plain ones (benchmarks/results/speed)
            outs = []
            for s in range(S):
                r = x[s]  # (B, C, H, W)
                for i, (w, b) in enumerate(layers):
                    r = F.conv2d(r, w[s], b[s], padding=w.shape[-1] // 2)
                    r = F.relu(r) if (i < len(layers) - 1 or relu_last) else r
                outs.append(r)
            r = torch.stack(outs)  # (S, B, C_obs, H, W)
        else:
            r = x.transpose(0, 1).reshape(B, S * C, H, W)  # (S, B, C, H, W) -> (B, S*C, H, W)
            for i, (w, b) in enumerate(layers):
                r = _gconv(r, w, b, S)
                r = F.relu(r) if (i < len(layers) - 1 or relu_last) else r
            r = r.reshape(B, S, self.cout, H, W).transpose(0, 1)  # (B, S*C_obs, H, W) -> (S, B, C_obs, H, W)
        if self.kind == "fmnist":
            skip = x if C == self.cout else x.mean(2, keepdim=True)
            return self.mask[:, None] * r + self.skip[:, None] * skip
        if self.kind == "paper":
            r = torch.tanh(r) if self.last == "tanh" else F.relu(r)
            return torch.tanh(self.mask[:, None] * r)
        lin = torch.einsum("soc,sbchw->sbohw", self.A, x) + self.bA[:, None, :, None, None]
        if hasattr(self, "Ph"):  # (S, B, C_obs, H, W): rows mixed by P_h, columns by P_w
            lin = torch.einsum("suh,sbchw,svw->sbcuv", self.Ph, lin, self.Pw)
        return (self.mask[:, None] * (lin + r)).clamp(-1, 1)

    @torch.no_grad()
    def negate(self, which: torch.Tensor) -> None:
        """Flip the sign of the affine path of the groups where ``which`` (S,) is true (gated only)."""
        if self.kind != "gated":
            raise ValueError("only the gated surrogate has an affine path to negate")
        sign = 1.0 - 2.0 * which.to(self.A.dtype)
        self.A.mul_(sign.view(-1, 1, 1))
        self.bA.mul_(sign.view(-1, 1))

    @torch.no_grad()
    def select(self, idx: torch.Tensor) -> "BatchedSurrogate":
        """A new surrogate holding groups ``idx`` (a gather along the group axis)."""
        new = BatchedSurrogate.__new__(BatchedSurrogate)
        nn.Module.__init__(new)
        new.kind, new.S, new.cin, new.cout, new.last = self.kind, len(idx), self.cin, self.cout, self.last
        for n, p in self.named_parameters():
            setattr(new, n, nn.Parameter(p[idx].clone()))
        return new


def make_surrogate(kind, groups, in_channels, out_channels, size, **kw) -> BatchedSurrogate:
    return BatchedSurrogate(kind, groups, in_channels, out_channels, size, **kw)
