"""The Python API: ``recover(images, task=...)`` and ``compare(...)``."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .engine import MimicConfig, solve
from .inputs import InputError, prepare
from .io import to_tensor, to_uint8
from .priors import Prior, load_prior
from .tasks import Task, get_task

__all__ = ["Recovery", "recover", "resolve_device", "make_groups"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available (use auto or cpu)")
    if device not in ("cpu",) and not str(device).startswith("cuda"):
        raise InputError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    return torch.device(device)


@dataclass
class Recovery:
    """Result of :func:`recover`.

    Attributes
    ----------
    images : ndarray uint8 (N, R, R, C)
        The recovered images.
    tensor : Tensor float32 (N, C, R, R) in [-1, 1] (CPU)
    mimicked : list of uint8 (R, R, C_obs) arrays
        The surrogate applied to each recovery: what the corruption was estimated to do.
    observed : list of uint8 (R, R, C_obs) arrays
        The observations as used (after resizing).
    z : Tensor (N, nz) latent codes in [-1, 1]
    group : ndarray int (N,)
        Index of the group (and so of the surrogate) of each image.
    obs_loss : ndarray (N,) final L_obs per image
    surrogates : list of dict
        Per group: the surrogate kind, channels and its weights (state dict of that group).
    history : list of dict
        Per group: name -> list of the group's mean loss after the warm start and each outer iteration.
    names : list of str
    fill : ndarray float (N,)
        Fraction of each observation's pixel values detected as a constant fill and left out of the fit
        (``fill`` option, on in the blind preset); 0 where none was found or detection is off.
    """

    images: np.ndarray
    tensor: torch.Tensor
    mimicked: list
    observed: list
    z: torch.Tensor
    group: np.ndarray
    obs_loss: np.ndarray
    surrogates: list
    history: list
    names: list
    method: str
    task: str
    config: dict
    prior: str
    prior_sha256: dict
    device: str
    seed: int
    seconds: float
    notices: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    restarted_groups: list = field(default_factory=list)
    fill: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def fill_notice(n_images: int, mean_fraction: float) -> str:
    """The notice for images in which fill pixels were detected."""
    return (f"{n_images} image(s) hold a constant fill value in {100 * mean_fraction:.0f}% of their pixels on average; "
            "those pixels were left out of the fit (fill detection; fill=False / --no-fill fits them)")


def make_groups(channels: list[int], batch_size: int) -> list[list[int]]:
    """Groups of at most ``batch_size`` indices, in input order, never mixing channel counts."""
    groups = []
    for c in sorted(set(channels)):
        idx = [i for i, ci in enumerate(channels) if ci == c]
        groups += [idx[k : k + batch_size] for k in range(0, len(idx), batch_size)]
    return sorted(groups, key=lambda g: g[0])


def _group_state(sur, s: int) -> dict:
    return {k: v[s].detach().cpu().clone() for k, v in sur.state_dict().items()}


def recover(images, *, task: str | Task | MimicConfig | None = None, method: str = "mimic",
            prior: str | Prior | None = None, batch_size: int = 25, device: str = "auto", seed: int = 0,
            strict_size: bool = False, groups_per_call: int | None = None, progress: bool = False,
            names: list | None = None, callback=None, **overrides) -> Recovery:
    """Recover clean images from corrupted observations with no knowledge of the corruption.

    Parameters
    ----------
    images : uint8 ndarray (N, H, W) or (N, H, W, C) | list of uint8 arrays or paths | float Tensor (N, C, H, W) in [-1, 1]
        | str or PathLike (one image file, or a folder: its images, recursively, sorted)
    task : str | Task | MimicConfig, optional
        A preset name (``mimic.list_tasks()``); ``None`` is the task-agnostic "blind" preset.
    method : {"mimic", "pgd"}
        MimicGAN, or plain GAN-prior inversion (the surrogate fixed to identity).
    prior : str | Prior, optional
        A shipped prior name (``mimic.list_priors()``), a prior folder, or a loaded ``Prior``;
        default: the task's prior (``celeba64`` for the face tasks).
    batch_size : int
        Observations per group; each group gets its own surrogate.
    device : {"auto", "cpu", "cuda"}
    seed : int
        Seeds the surrogates' initialisation and the restarts.
    groups_per_call : int, optional
        Groups optimised together (default: all on CUDA, 1 on CPU).
    **overrides
        ``MimicConfig`` fields (e.g. ``T=5``, ``warm_steps=100``).
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    t = get_task(task)
    pr = load_prior(prior if prior is not None else t.prior, device=dev)
    cfg = t.config.replace(**overrides) if overrides else t.config
    if method not in ("mimic", "pgd"):
        raise InputError(f"unknown method {method!r}; valid: mimic, pgd")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    prep = prepare(images, resolution=pr.resolution, strict_size=strict_size, names=names)
    if not prep.images:
        raise InputError("no readable images to recover")
    chans = [im.shape[-1] for im in prep.images]
    for im, nm in zip(prep.images, prep.names):
        if im.shape[-1] not in (1, pr.channels):
            raise InputError(f"{nm}: {im.shape[-1]}-channel observation cannot be explained by the "
                             f"{pr.channels}-channel prior {pr.name!r}")
    groups = make_groups(chans, batch_size)
    n = len(prep.images)
    R, C = pr.resolution, pr.channels
    x_all = torch.empty(n, C, R, R)
    z_all = torch.empty(n, pr.nz)
    loss_all = np.empty(n)
    gid = np.empty(n, dtype=np.int64)
    mimicked: list = [None] * n
    surrogates: list = [None] * len(groups)
    history: list = [None] * len(groups)
    restarted = []
    fill_all = np.zeros(n)  # per image: fraction of its pixel values detected as fill
    # CPU: one group per call (measured: two groups in one call take 1.9x as long as one, no batching gain
    # on 2 cores; benchmarks/results/speed); GPU: all groups in one call
    gpc = groups_per_call or (len(groups) if dev.type == "cuda" else 1)
    # calls: runs of consecutive groups with the same channel count
    calls, cur = [], []
    for gi, g in enumerate(groups):
        if cur and (len(cur) >= gpc or chans[groups[cur[0]][0]] != chans[g[0]]):
            calls.append(cur)
            cur = []
        cur.append(gi)
    if cur:
        calls.append(cur)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    prog = Progress(TextColumn(f"[bold]{method}"), BarColumn(), TextColumn("{task.completed}/{task.total} images"),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress,
                    console=__import__("rich.console", fromlist=["Console"]).Console(stderr=True))
    with prog:
        ptask = prog.add_task("recover", total=n)
        for call in calls:
            gs = [groups[gi] for gi in call]
            B = max(len(g) for g in gs)
            cobs = chans[gs[0][0]]
            y = torch.zeros(len(gs), B, cobs, R, R)
            valid = torch.zeros(len(gs), B)
            for s, g in enumerate(gs):
                y[s, : len(g)] = to_tensor(np.stack([prep.images[i] for i in g]))
                valid[s, : len(g)] = 1
            gen = torch.Generator().manual_seed(seed * 1_000_003 + call[0])
            out = solve(pr.G, pr.D, y.to(dev), cfg, method=method, valid=valid.to(dev), generator=gen,
                        callback=callback)
            x, fx, z, ol = out.x.cpu(), out.fx.cpu(), out.z.cpu(), out.obs_loss.cpu().numpy()
            frac = None if out.fill is None else out.fill.cpu().numpy()  # (S, B) fill fraction the engine left out
            for s, (gi, g) in enumerate(zip(call, gs)):
                k = len(g)
                x_all[g] = x[s, :k]
                z_all[g] = z[s, :k]
                loss_all[g] = ol[s, :k]
                if frac is not None:
                    fill_all[g] = frac[s, :k]
                gid[g] = gi
                fxu = to_uint8(fx[s, :k])
                for j, i in enumerate(g):
                    mimicked[i] = fxu[j]
                surrogates[gi] = {"kind": out.surrogate.kind, "init": out.init[s], "in_channels": C, "out_channels": cobs,
                                  "state_dict": _group_state(out.surrogate, s)}
                history[gi] = {kk: v[:, s].tolist() for kk, v in out.history.items()}
                if s in out.retried:
                    restarted.append(gi)
            prog.advance(ptask, sum(len(g) for g in gs))
    notices = list(prep.notices)
    if (fill_all > 0).any():
        notices.append(fill_notice(int((fill_all > 0).sum()), float(fill_all[fill_all > 0].mean())))
    if restarted:
        notices.append(f"{len(restarted)} group(s) diverged and were restarted with a smaller step: {restarted}")
    return Recovery(images=to_uint8(x_all), tensor=x_all, mimicked=mimicked, observed=list(prep.images), z=z_all,
                    group=gid, obs_loss=loss_all, surrogates=surrogates, history=history, names=prep.names,
                    method=method, task=t.name, config=asdict(cfg), prior=pr.name, prior_sha256=pr.sha256,
                    device=str(dev), seed=seed, seconds=time.perf_counter() - t0, notices=notices,
                    skipped=prep.skipped, restarted_groups=restarted, fill=fill_all)
