"""Corruption surrogates, batched over groups, and their registry.

A surrogate ``f`` maps a clean estimate ``x = G(z)`` to an imitation of the observation. The engine recovers many
groups at once, each group with its own surrogate, so every surrogate holds its weights with a leading group axis
S and runs as grouped convolutions (or, on a CPU, a loop of plain ones):

    f(x): x (S, B, C_in, H, W) in [-1, 1] -> (S, B, C_obs, H, W)

``list_surrogates()`` names the kinds; ``get_surrogate(name, groups=S, in_channels=..., out_channels=...,
size=..., generator=...)`` builds one (a ``BatchedSurrogate`` object is returned as it is).

Kinds
-----
``gated`` (default)
    Starts at identity: ``f(x) = m * (A x + b + r(x))``, clipped to [-1, 1]. ``A x + b`` is a 1x1 convolution, the
    affine colour path, initialised to identity (the channel mean for C_obs = 1 < C_in; ``negate`` flips it for the
    inverted-intensity candidate start); ``r`` is the paper's three 5x5 convolutions with the last one at zero;
    ``m`` an elementwise mask (C_obs, H, W) at 1 that can switch destroyed regions off. A project addition: the
    paper's randomly initialised surrogate starts far from any mild corruption (docs/DEFAULTS.md).
``paper``
    The MimicGAN paper's surrogate: Conv5x5(C_in->16)+ReLU, Conv5x5(16->16)+ReLU, Conv5x5(16->C_obs)+ReLU, an
    elementwise mask (C_obs, H, W) and TanH. Random (DCGAN) initialisation, mask at 1.
``fmnist``
    The paper's Fashion-MNIST surrogate: Conv5x5(C_in->16)+ReLU, Conv5x5(16->C_obs)+ReLU, an elementwise mask,
    plus a learned elementwise weight W (C_obs, H, W) times the input (a skip connection, W at 1).
``identity``
    No parameters: ``f(x) = x`` (plain GAN-prior inversion, PGD). A 1-channel observation is compared with every
    channel of ``x`` by broadcasting.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

__all__ = ["BatchedSurrogate", "GatedSurrogate", "PaperSurrogate", "FMNISTSurrogate", "IdentitySurrogate",
           "list_surrogates", "get_surrogate", "register_surrogate"]

HIDDEN = 16  # width of the convolutions (the paper's)
KSIZE = 5  # their kernel size (the paper's)

#: On a CPU, run the S groups' convolutions as a loop of plain convolutions (grouped convolutions take
#: 3-4x longer there); elsewhere as one grouped convolution. Both give the same result.
CPU_LOOP = True

_SURROGATES = Registry("surrogate", sort=False)
register_surrogate = _SURROGATES.register


def list_surrogates() -> list[str]:
    """Names of the surrogate kinds."""
    return _SURROGATES.names()


def get_surrogate(name_or_obj, **kw) -> "BatchedSurrogate":
    """A surrogate by kind, built with ``groups``, ``in_channels``, ``out_channels``, ``size`` and ``generator``
    (keywords); a ``BatchedSurrogate`` is returned as it is."""
    return _SURROGATES.get(name_or_obj, instance_of=BatchedSurrogate, build=lambda cls, **k: cls(**k), **kw)


def _glorot(co: int, ci: int, generator) -> torch.Tensor:
    """A (co, ci, k, k) Glorot-uniform kernel (TensorFlow's default initialisation)."""
    bound = math.sqrt(6.0 / ((ci + co) * KSIZE * KSIZE))
    return (torch.rand(co, ci, KSIZE, KSIZE, generator=generator) * 2 - 1) * bound


class BatchedSurrogate(nn.Module):
    """S independent surrogates evaluated together: the base of every kind.

    Parameters (keyword-only)
    ----------
    groups : int
        S, the number of independent surrogates.
    in_channels, out_channels : int
        C_in (the generator's channels) and C_obs (the observation's).
    size : int
        Image side (for the masks).
    generator : torch.Generator, optional
        Seeds the random initialisation (drawn on the CPU, group after group, so that group s's initial weights do
        not depend on how many groups are batched with it).

    Subclasses set ``kind``, build their parameters with a leading axis S, and implement ``forward``.
    """

    kind = "base"

    def __init__(self, *, groups: int, in_channels: int, out_channels: int, size: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.S, self.cin, self.cout, self.size = groups, in_channels, out_channels, size

    def _convs(self, widths: list[tuple[int, int]], generator) -> None:
        """Convolutions w1, b1, w2, b2, ... of the given (out, in) widths, drawn group after group."""
        ws = [[_glorot(co, ci, generator) for co, ci in widths] for _ in range(self.S)]
        for i, (co, _) in enumerate(widths, 1):
            setattr(self, f"w{i}", nn.Parameter(torch.stack([w[i - 1] for w in ws])))  # (S, co, ci, k, k)
            setattr(self, f"b{i}", nn.Parameter(torch.zeros(self.S, co)))  # (S, co)
        self.n_convs = len(widths)

    def _stack(self, x: torch.Tensor, *, relu_last: bool) -> torch.Tensor:
        """The convolution stack, ReLU between layers (and after the last one with ``relu_last``):
        (S, B, C_in, H, W) -> (S, B, C_obs, H, W)."""
        S, B, C, H, W = x.shape
        layers = [(getattr(self, f"w{i}"), getattr(self, f"b{i}")) for i in range(1, self.n_convs + 1)]
        last = len(layers) - 1
        if CPU_LOOP and x.device.type == "cpu" and S > 1:  # grouped convolutions take 3-4x a loop of plain ones
            outs = []
            for s in range(S):
                r = x[s]  # (B, C, H, W)
                for i, (w, b) in enumerate(layers):
                    r = F.conv2d(r, w[s], b[s], padding=w.shape[-1] // 2)
                    r = F.relu(r) if (i < last or relu_last) else r
                outs.append(r)
            return torch.stack(outs)  # (S, B, C_obs, H, W)
        r = x.transpose(0, 1).reshape(B, S * C, H, W)  # (S, B, C, H, W) -> (B, S*C, H, W)
        for i, (w, b) in enumerate(layers):
            s_, co, ci, k, _ = w.shape
            r = F.conv2d(r, w.reshape(s_ * co, ci, k, k), b.reshape(s_ * co), padding=k // 2, groups=S)
            r = F.relu(r) if (i < last or relu_last) else r
        return r.reshape(B, S, self.cout, H, W).transpose(0, 1)  # (B, S*C_obs, H, W) -> (S, B, C_obs, H, W)

    @torch.no_grad()
    def select(self, idx: torch.Tensor) -> "BatchedSurrogate":
        """A new surrogate of the same kind holding groups ``idx`` (a gather along the group axis)."""
        new = object.__new__(type(self))
        nn.Module.__init__(new)
        for k, v in self.__dict__.items():
            if not k.startswith("_"):
                new.__dict__[k] = v
        new.S = len(idx)
        for n, p in self.named_parameters():
            setattr(new, n, nn.Parameter(p[idx].clone()))
        return new

    def group_state(self, s: int) -> dict:
        """The weights of group ``s`` (a CPU state dict without the group axis)."""
        return {k: v[s].detach().cpu().clone() for k, v in self.state_dict().items()}


@register_surrogate("gated")
class GatedSurrogate(BatchedSurrogate):
    """Identity-started surrogate ``m * (A x + b + r(x))`` (see the module docstring)."""

    kind = "gated"

    def __init__(self, **kw):
        super().__init__(**kw)
        S, cin, cout = self.S, self.cin, self.cout
        self._convs([(HIDDEN, cin), (HIDDEN, HIDDEN), (cout, HIDDEN)], kw.get("generator"))
        with torch.no_grad():
            self.w3.zero_()  # r(x) = 0 at the start
        self.mask = nn.Parameter(torch.ones(S, cout, self.size, self.size))
        A = torch.zeros(S, cout, cin)
        A[:] = torch.eye(cin) if cout == cin else 1.0 / cin  # identity, or the channel mean for a gray observation
        self.A = nn.Parameter(A)  # (S, C_obs, C_in)
        self.bA = nn.Parameter(torch.zeros(S, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self._stack(x, relu_last=False)
        lin = torch.einsum("soc,sbchw->sbohw", self.A, x) + self.bA[:, None, :, None, None]
        return (self.mask[:, None] * (lin + r)).clamp(-1, 1)

    @torch.no_grad()
    def negate(self, which: torch.Tensor) -> None:
        """Flip the sign of the affine path of the groups where ``which`` (S,) is true."""
        sign = 1.0 - 2.0 * which.to(self.A.dtype)
        self.A.mul_(sign.view(-1, 1, 1))
        self.bA.mul_(sign.view(-1, 1))


@register_surrogate("paper")
class PaperSurrogate(BatchedSurrogate):
    """The MimicGAN paper's surrogate (see the module docstring)."""

    kind = "paper"

    def __init__(self, **kw):
        super().__init__(**kw)
        self._convs([(HIDDEN, self.cin), (HIDDEN, HIDDEN), (self.cout, HIDDEN)], kw.get("generator"))
        self.mask = nn.Parameter(torch.ones(self.S, self.cout, self.size, self.size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(self._stack(x, relu_last=False))
        return torch.tanh(self.mask[:, None] * r)


@register_surrogate("fmnist")
class FMNISTSurrogate(BatchedSurrogate):
    """The paper's Fashion-MNIST surrogate (see the module docstring)."""

    kind = "fmnist"

    def __init__(self, **kw):
        super().__init__(**kw)
        self._convs([(HIDDEN, self.cin), (self.cout, HIDDEN)], kw.get("generator"))
        self.mask = nn.Parameter(torch.ones(self.S, self.cout, self.size, self.size))
        self.skip = nn.Parameter(torch.ones(self.S, self.cout, self.size, self.size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self._stack(x, relu_last=True)
        skip = x if x.shape[2] == self.cout else x.mean(2, keepdim=True)
        return self.mask[:, None] * r + self.skip[:, None] * skip


@register_surrogate("identity")
class IdentitySurrogate(BatchedSurrogate):
    """``f(x) = x``: no parameters (PGD)."""

    kind = "identity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
