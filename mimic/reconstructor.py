"""Unsupervised adversarial image reconstruction (Pajot et al., ICLR 2019): a network trained from corrupted
observations only, that recovers an image in one forward pass.

Test-time recovery (``mimic.recover``) solves an optimisation per group of observations and needs no training; it
does one or two images per second on a CPU. When a user has many observations of one *known* stochastic corruption
``F(x; theta)`` (a registered corruption: ``theta`` its random draw, e.g. which pixels are removed, where the band
lies, the noise), Pajot et al. train an image-to-image network ``G: y -> x`` from the observations alone, never
from clean images (their Algorithm 1)::

    x_hat = G(y)                                   reconstruction of a real observation y
    y_hat = F(x_hat; theta')                       simulated observation, theta' a fresh draw
    D:  real observations y   vs   simulated y_hat                  (hinge loss, spectral norm)
    G:  -D(y_hat) + lam_lik * || F(G(y_hat); theta') - y_hat ||^2  (the same theta' twice: the likelihood term)

The adversarial term makes the simulated observations indistinguishable from the real ones (so G's outputs, once
corrupted, look like corrupted faces); the likelihood term ties a reconstruction to its observation (what F keeps
of x_hat must come back through G). Once trained, recovery is one forward pass: thousands of images per second.

The ``paired`` variant is the supervised reference: the same network trained on (observation, clean face) pairs
with a squared error. It is not blind and not unsupervised; it shows what the architecture can reach with
supervision.

Layout of a trained run (``train_reconstructor``): ``checkpoint.pt`` (resumable, bit-exact), ``samples/
epoch_NNN.png`` (observations, reconstructions of the validation faces), ``history.json``, ``split.json`` and,
at the end, the exported reconstructor in ``reconstructor/`` (``reconstructor.safetensors``, ``config.json``,
``card.json`` with its sha256), which :func:`load_reconstructor` loads.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from .corruptions import get_corruption
from .io import labeled_grid, save_json, save_png, to_tensor, to_uint8

__all__ = ["ReconstructorConfig", "Reconstructor", "ImageToImageNet", "ObservationCritic", "train_reconstructor",
           "export_reconstructor", "load_reconstructor", "list_reconstructors", "VARIANTS"]

VARIANTS = ("unsupervised", "paired")


@dataclass
class ReconstructorConfig:
    corruption: str = "remove_pixel"  # the registered corruption the observations went through
    corruption_params: dict = field(default_factory=dict)  # its settings (empty: the registered defaults)
    variant: str = "unsupervised"  # "unsupervised" (observations only) or "paired" (supervised reference)
    epochs: int = 10  # passes over the training observations
    batch_size: int = 32  # observations per step
    lr_g: float = 1e-4  # Adam step of G (Pajot et al.: 1e-4, betas (0, 0.999))
    lr_d: float = 4e-4  # Adam step of D (two time scales, as theirs)
    lam_lik: float = 1.0  # weight of the likelihood term || F(G(y_hat); theta') - y_hat ||^2
    width: int = 32  # channels of G's first level (x2 per level, three levels)
    residual: bool = True  # G corrects its observation (it starts at y), as Pajot et al.'s G for bands and blur
    holdout: int = 1000  # last sorted images held out, as the priors' split (val = first half, test = second)
    n_val: int = 64  # validation faces whose MSE is logged each epoch (and shown in the sample grid)
    seed: int = 0  # seeds weights, the observations' corruption, shuffling and theta'
    ckpt_every: int = 500  # steps between checkpoints (and one at each epoch end)
    val_every: int = 100  # steps between logs of the validation MSE (OUT/val_curve.json; 0: at epoch ends only)
    crop_fraction: float = 108 / 178  # CelebA crop convention

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        for name in ("epochs", "batch_size", "width", "ckpt_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_g", "lr_d"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be finite and > 0, got {v}")
        if int(self.val_every) < 0:
            raise ValueError(f"val_every must be >= 0, got {self.val_every}")
        if not np.isfinite(self.lam_lik) or self.lam_lik < 0:
            raise ValueError(f"lam_lik must be finite and >= 0, got {self.lam_lik}")
        get_corruption(self.corruption, **self.corruption_params)  # an unknown name lists the valid ones


#: settings a resumed run may change (they do not alter what is trained)
_RESUMABLE_CHANGES = {"epochs", "val_every"}


class ImageToImageNet(nn.Module):
    """An encoder-decoder with skips (a small U-Net): (N, C_in, R, R) -> (N, C_out, R, R) in [-1, 1], R % 4 == 0."""

    def __init__(self, c_in: int, c_out: int = 3, width: int = 32, *, residual: bool = False):
        super().__init__()
        if residual and c_in != c_out:
            raise ValueError(f"a residual network maps C to C channels, got {c_in} -> {c_out}")
        self.residual = residual
        w = width
        self.enc1 = nn.Sequential(nn.Conv2d(c_in, w, 3, padding=1), nn.ReLU(True), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(True))
        self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(True), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(True))
        self.enc3 = nn.Sequential(nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.ReLU(True), nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(True))
        self.dec2 = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.ReLU(True))
        self.dec1 = nn.Sequential(nn.ConvTranspose2d(4 * w, w, 4, 2, 1), nn.ReLU(True))
        self.out = nn.Conv2d(2 * w, c_out, 3, padding=1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(y)  # (N, w, R, R)
        e2 = self.enc2(e1)  # (N, 2w, R/2, R/2)
        e3 = self.enc3(e2)  # (N, 4w, R/4, R/4)
        d2 = torch.cat([self.dec2(e3), e2], 1)  # (N, 4w, R/2, R/2)
        d1 = torch.cat([self.dec1(d2), e1], 1)  # (N, 2w, R, R)
        if self.residual:  # a correction of the observation, in tanh's domain: out = 0 returns y
            return torch.tanh(self.out(d1) + torch.atanh(y.clamp(-0.999, 0.999)))
        return torch.tanh(self.out(d1))


class ObservationCritic(nn.Module):
    """Tells real observations from simulated ones: (N, C, 64, 64) -> (N,) logits. Spectrally normalised
    convolutions (SAGAN's discriminator, without attention), LeakyReLU 0.2."""

    def __init__(self, c_in: int, width: int = 32):
        super().__init__()
        w = width
        layers, c = [], c_in
        for k in (1, 2, 4, 8):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [spectral_norm(nn.Conv2d(c, k * w, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
            c = k * w
        layers.append(spectral_norm(nn.Conv2d(c, 1, 4, 1, 0)))  # 4 -> 1
        self.net = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y).flatten()


@dataclass(repr=False)
class Reconstructor:
    """A trained reconstructor: ``net`` (eval mode, frozen) and what it was trained for.

    ``reconstructor(y)`` maps float observations (N, C_obs, R, R) in [-1, 1] to recoveries (N, C, R, R) in [-1, 1];
    :meth:`recover_uint8` does the same for uint8 arrays (N, R, R, C_obs)."""

    name: str
    net: ImageToImageNet
    config: dict
    path: str
    sha256: dict
    card: dict

    def __repr__(self) -> str:
        return (f"Reconstructor({self.name!r}, corruption={self.config['corruption']!r}, "
                f"variant={self.config['variant']!r})")

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> "Reconstructor":
        self.net.to(device)
        return self

    @property
    def corruption(self):
        """The corruption it was trained for (an operator module)."""
        return get_corruption(self.config["corruption"], **self.config.get("corruption_params", {}))

    @torch.no_grad()
    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y.to(self.device)).cpu()

    @torch.no_grad()
    def recover_uint8(self, y_u8: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, R, R, C_obs) observations -> uint8 (N, R, R, C) recoveries."""
        y = to_tensor(y_u8)
        return to_uint8(torch.cat([self(y[k : k + batch_size]) for k in range(0, len(y), batch_size)]))


def _observations(corr, x_u8: np.ndarray, seed: int, chunk: int = 1024) -> np.ndarray:
    """Each face corrupted once (its theta drawn from ``seed``), quantised to uint8 as a user's files are."""
    gen = torch.Generator().manual_seed(seed)
    return np.concatenate([to_uint8(corr(to_tensor(x_u8[k : k + chunk]), generator=gen))
                           for k in range(0, len(x_u8), chunk)])


def train_reconstructor(data: str | os.PathLike | None, out: str | os.PathLike,
                        cfg: ReconstructorConfig = ReconstructorConfig(), *, device: str = "cpu",
                        resume: bool = False, max_steps: int | None = None, progress: bool = True,
                        train_images: np.ndarray | None = None, val_images: np.ndarray | None = None) -> dict:
    """Train a reconstructor (see the module docstring); returns a summary dict (history, timing, paths).

    Parameters
    ----------
    data : path
        A folder of face images (CelebA crop convention), split as the priors' are (``holdout``); ignored when
        ``train_images`` is given.
    out : path
        The run's folder (``checkpoint.pt``, ``samples/``, ``history.json``, ``split.json``, ``reconstructor/``).
    resume : bool
        Continue from ``out/checkpoint.pt`` (the same weights as an uninterrupted run).
    max_steps : int, optional
        Stop after this many steps in this call (time-boxed runs, tests); a later ``resume`` continues exactly.
    train_images, val_images : uint8 ndarray (N, 64, 64, 3), optional
        Faces to make the training observations from, and validation faces, instead of reading ``data``.

    The unsupervised variant never sees a clean training face: each one is corrupted once (its own theta) and only
    the observation is kept. Clean *validation* faces are used only to log the MSE of their reconstructions.
    """
    from .priors.train import _save_ckpt, load_training_data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    corr = get_corruption(cfg.corruption, **cfg.corruption_params)
    if train_images is None:
        x_u8, split_desc = load_training_data(data, "dcgan64", holdout=cfg.holdout, crop_fraction=cfg.crop_fraction)
    else:
        x_u8, split_desc = train_images, {"train": {"n": len(train_images), "source": "given array"}}
    if val_images is None:  # the first n_val faces of the same folder's validation split
        from .data import list_images, load_image_folder, split_files

        files = split_files(list_images(data), holdout=cfg.holdout).val[: cfg.n_val]
        val_u8 = load_image_folder(files, size=64, crop_fraction=cfg.crop_fraction)
        val_source = f"first {len(files)} faces of the validation split"
    else:
        val_u8, val_source = val_images[: cfg.n_val], "given array"
    split_desc["validation_logged"] = val_source
    c = x_u8.shape[-1]
    obs_u8 = _observations(corr, x_u8, cfg.seed)  # (N, R, R, C_obs): what the network learns from
    clean = to_tensor(x_u8) if cfg.variant == "paired" else None  # the supervised reference only
    del x_u8
    Y = to_tensor(obs_u8)  # (N, C_obs, R, R) in [-1, 1]
    c_obs, n = Y.shape[1], Y.shape[0]
    val_obs = to_tensor(_observations(corr, val_u8, cfg.seed + 1))
    val_clean = to_tensor(val_u8)
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{n} training images is fewer than one batch of {cfg.batch_size}")

    torch.manual_seed(cfg.seed)
    G = ImageToImageNet(c_obs, c, cfg.width, residual=cfg.residual and c_obs == c).to(device=device, memory_format=torch.channels_last)
    D = ObservationCritic(c_obs, cfg.width).to(device=device, memory_format=torch.channels_last)
    optG = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(0.0, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(0.0, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed + 2)  # shuffling and theta'
    epoch, step_in_epoch, global_step, perm, history, elapsed = 0, 0, 0, None, [], 0.0
    curve: list = []  # (step, validation MSE) every val_every steps and at each epoch end: the learning curve
    sums: dict = {}  # the epoch's summed losses so far (its history row averages them)
    if resume and ckpt_path.exists():
        st = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        diff = {k: (st["config"].get(k), v) for k, v in asdict(cfg).items()
                if st["config"].get(k) != v and k not in _RESUMABLE_CHANGES}
        if diff:
            raise ValueError(f"{ckpt_path}: checkpoint was made with other settings {diff}")
        G.load_state_dict(st["G"]), D.load_state_dict(st["D"])
        optG.load_state_dict(st["optG"]), optD.load_state_dict(st["optD"])
        gen.set_state(st["gen"])
        epoch, step_in_epoch, global_step = st["epoch"], st["step_in_epoch"], st["global_step"]
        perm, history, elapsed = st["perm"], st["history"], st["elapsed"]
        sums = dict(st.get("sums", {}))
        curve = list(st.get("curve", []))
    elif resume and progress:
        print(f"note: {ckpt_path} not found; starting from scratch", file=sys.stderr)
    save_json(out / "split.json", split_desc)

    def checkpoint():
        _save_ckpt(ckpt_path, {"config": asdict(cfg), "G": G.state_dict(), "D": D.state_dict(),
                               "optG": optG.state_dict(), "optD": optD.state_dict(), "gen": gen.get_state(),
                               "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                               "perm": perm, "history": history, "elapsed": elapsed, "curve": curve,
                               "sums": {k: float(v) for k, v in sums.items()}})

    def corrupt(x, seed):  # F(x; theta(seed)): the same seed, the same theta
        return corr(x, generator=torch.Generator().manual_seed(seed))

    def train_step(idx):
        y = Y[idx].to(device=device, memory_format=torch.channels_last)  # (B, C_obs, R, R)
        if cfg.variant == "paired":
            loss_g = F.mse_loss(G(y), clean[idx].to(device))
            optG.zero_grad(set_to_none=True)
            loss_g.backward()
            optG.step()
            return {"loss_g": loss_g.detach()}
        s_d, s_g = (int(v) for v in torch.randint(0, 2**62, (2,), generator=gen))
        # D: real observations against simulated ones F(G(y); theta')
        with torch.no_grad():
            y_sim = corrupt(G(y), s_d)
        loss_d = F.relu(1 - D(y)).mean() + F.relu(1 + D(y_sim)).mean()
        optD.zero_grad(set_to_none=True)
        loss_d.backward()
        optD.step()
        # G: fool D, and what F keeps of a reconstruction must come back through G (the same theta' twice)
        y_hat = corrupt(G(y), s_g)
        adv = -D(y_hat).mean()
        lik = F.mse_loss(corrupt(G(y_hat), s_g), y_hat.detach())
        loss_g = adv + cfg.lam_lik * lik
        optG.zero_grad(set_to_none=True)
        loss_g.backward()
        optG.step()
        return {"loss_d": loss_d.detach(), "loss_adv": adv.detach(), "loss_lik": lik.detach()}  # summed on the device

    @torch.no_grad()
    def validate():
        G.eval()
        rec = torch.cat([G(val_obs[k : k + 64].to(device)).cpu() for k in range(0, len(val_obs), 64)])
        G.train()
        return rec, float(((rec - val_clean) ** 2).mean())

    done_this_call = 0
    t_start = time.perf_counter()
    while epoch < cfg.epochs:
        if perm is None or step_in_epoch == 0:
            perm = torch.randperm(n, generator=gen)
        while step_in_epoch < steps_per_epoch:
            if max_steps is not None and done_this_call >= max_steps:
                elapsed += time.perf_counter() - t_start
                checkpoint()
                return {"stopped": True, "global_step": global_step, "history": history, "out": str(out)}
            idx = perm[step_in_epoch * cfg.batch_size : (step_in_epoch + 1) * cfg.batch_size]
            for k, v in train_step(idx).items():
                sums[k] = sums.get(k, 0.0) + v
            step_in_epoch += 1
            global_step += 1
            done_this_call += 1
            if cfg.val_every and global_step % cfg.val_every == 0 and step_in_epoch < steps_per_epoch:
                curve.append({"step": global_step, "val_mse": validate()[1]})
                save_json(out / "val_curve.json", curve)
            if global_step % cfg.ckpt_every == 0:
                elapsed += time.perf_counter() - t_start
                t_start = time.perf_counter()
                checkpoint()
        rec, val_mse = validate()
        row = {"epoch": epoch + 1, **{k: float(v) / steps_per_epoch for k, v in sums.items()}, "val_mse": val_mse}
        history.append(row)
        curve.append({"step": global_step, "val_mse": val_mse})
        sums = {}
        k = min(8, len(val_obs))
        grid = labeled_grid([to_uint8(val_obs[:k]), to_uint8(rec[:k]), to_uint8(val_clean[:k])],
                            row_labels=["observed", "reconstructed", "clean"])
        save_png(out / "samples" / f"epoch_{epoch + 1:03d}.png", grid)
        epoch += 1
        step_in_epoch = 0
        elapsed += time.perf_counter() - t_start
        t_start = time.perf_counter()
        checkpoint()
        save_json(out / "history.json", history)
        save_json(out / "val_curve.json", curve)
        if progress:
            print(f"epoch {epoch}/{cfg.epochs}: " + " ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"),
                  file=sys.stderr, flush=True)
    info = export_reconstructor(out, G, cfg, history=history, elapsed=elapsed, device=device,
                                split=split_desc, steps=global_step, curve=curve)
    return {"stopped": False, "global_step": global_step, "history": history, "out": str(out), **info}


def export_reconstructor(out, G: ImageToImageNet, cfg: ReconstructorConfig, *, history: list, elapsed: float,
                         device: str, split: dict, steps: int | None = None, curve: list | None = None) -> dict:
    """Write ``out/reconstructor/`` (weights, config.json, card.json with their sha256); returns its paths."""
    from safetensors.torch import save_file

    from .priors import sha256_file
    from .priors.train import _hardware

    folder = Path(out) / "reconstructor"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "reconstructor.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}, str(tmp))
    os.replace(tmp, folder / "reconstructor.safetensors")
    first = next(G.parameters())
    conf = {"arch": "unet3", "c_in": G.enc1[0].in_channels, "c_out": G.out.out_channels, "width": cfg.width,
            "residual": G.residual,
            "corruption": cfg.corruption, "corruption_params": get_corruption(cfg.corruption, **cfg.corruption_params).params(),
            "variant": cfg.variant, "resolution": 64}
    save_json(folder / "config.json", conf)
    card = {"name": f"{cfg.corruption}-{cfg.variant}", "method": "Pajot et al. (ICLR 2019), Algorithm 1"
            if cfg.variant == "unsupervised" else "supervised reference (paired, squared error)",
            "training": {**asdict(cfg), "steps": steps, "train_seconds": elapsed, "hardware": _hardware(device),
                         "split": split, "history": history, "val_curve": curve or [],
                         "parameters": sum(p.numel() for p in G.parameters()),
                         "dtype": str(first.dtype)},
            "sha256": {"reconstructor.safetensors": sha256_file(folder / "reconstructor.safetensors")}}
    save_json(folder / "card.json", card)
    return {"reconstructor": str(folder)}


def _pretrained_root() -> Path:
    from .priors import pretrained_dir

    return pretrained_dir() / "reconstructors"


def list_reconstructors() -> list[str]:
    """Names of the shipped reconstructors (folders of ``pretrained/reconstructors/`` with a card)."""
    d = _pretrained_root()
    return sorted(p.name for p in d.iterdir() if (p / "card.json").exists()) if d.is_dir() else []


def load_reconstructor(name_or_path, *, device="cpu", trust_unverified: bool = False) -> Reconstructor:
    """Load a reconstructor by shipped name (:func:`list_reconstructors`) or folder (a run's ``reconstructor/``,
    or the run folder itself), checking its sha256 against its card (``trust_unverified`` to skip a missing one).
    A :class:`Reconstructor` is returned as is (moved to ``device``)."""
    from safetensors.torch import load_file

    from .priors import PriorError, _verify

    if isinstance(name_or_path, Reconstructor):
        return name_or_path.to(device)
    p = Path(str(name_or_path))
    if p.is_dir() and (p / "reconstructor").is_dir() and not (p / "config.json").exists():
        p = p / "reconstructor"
    if not p.is_dir():
        if str(name_or_path) in list_reconstructors():
            p = _pretrained_root() / str(name_or_path)
        else:
            valid = ", ".join(list_reconstructors()) or "(none shipped)"
            raise PriorError(f"unknown reconstructor {name_or_path!r} (not a folder either); valid: {valid}")
    cfg_path = p / "config.json"
    if not cfg_path.exists():
        raise PriorError(f"{cfg_path}: missing (a reconstructor folder needs config.json)")
    conf = json.loads(cfg_path.read_text())
    card = json.loads((p / "card.json").read_text()) if (p / "card.json").exists() else {}
    sums = _verify(p, card, ["reconstructor.safetensors"], trust_unverified=trust_unverified)
    net = ImageToImageNet(conf["c_in"], conf["c_out"], conf["width"], residual=conf.get("residual", False))
    try:
        net.load_state_dict(load_file(str(p / "reconstructor.safetensors")))
    except Exception as e:  # noqa: BLE001
        raise PriorError(f"{p}: weights do not match its config.json ({str(e).splitlines()[0]})") from None
    net.eval().requires_grad_(False)
    return Reconstructor(name=card.get("name", p.name), net=net, config=conf, path=str(p), sha256=sums,
                         card=card).to(device)
