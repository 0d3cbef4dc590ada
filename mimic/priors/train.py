"""Training of GAN priors and of the Fashion-MNIST classifier.

``train_prior`` trains a GAN with z ~ U(-1, 1) (the same box the recovery
projects onto), keeps a held-out split it never trains on, saves a sample grid
every epoch, checkpoints atomically every ``ckpt_every`` steps and resumes
bit-exactly (same weights as an uninterrupted run) with ``resume=True``.

Training options (``TrainConfig``; ``mimic train prior`` flags in brackets):

- ``loss`` (``--loss``): ``"dcgan"`` (the default: non-saturating cross-entropy), ``"lsgan"`` (least squares, Mao et
  al. 2017), ``"wgan-gp"`` (Wasserstein critic with a gradient penalty of weight 10, Gulrajani et al. 2017) or
  ``"hinge"`` (Miyato et al. 2018, SAGAN); see :mod:`mimic.priors.losses`. With ``"wgan-gp"`` D is built with
  layer norm in place of batch norm (the penalty is per image; batch norm mixes the images of a batch).
- ``n_critic`` (``--n-critic``): D steps per G step (default 1; 5 is Gulrajani et al.'s choice for ``"wgan-gp"``,
  who also use Adam lr 1e-4, betas (0, 0.9)). Every step takes a new batch and updates D; G and its moving average
  are updated on every ``n_critic``-th step.
- ``spectral_norm`` (``--spectral-norm``): spectral norm on every convolution and linear layer of D.
- ``attention`` (``--attention``): a SAGAN self-attention block at 32x32 in G and in D (dcgan64 only; refused for
  fmnist28 with a one-line error).
- ``ngf``, ``ndf``: widths of G and D (dcgan64 only; small ones make quick test models).

A checkpoint and the exported prior's ``config.json`` record these settings, so that ``load_prior`` rebuilds the
same networks; resuming with a different one is refused. A checkpoint made before an option existed resumes as
made with its default.
"""
from __future__ import annotations

import copy
import io
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import list_images, load_fmnist, load_image_folder, split_files
from ..io import atomic_write_bytes, make_grid, save_json, save_png, to_tensor, to_uint8
from .losses import GP_WEIGHT, d_loss, g_loss, gradient_penalty, list_losses
from .models import ARCHS, FMNISTClassifier, build_gan, init_dcgan_weights

__all__ = ["TrainConfig", "train_prior", "check_config", "network_options", "load_training_data", "train_classifier",
           "export_prior"]


@dataclass
class TrainConfig:
    arch: str = "dcgan64"  # "dcgan64" (64x64 RGB) or "fmnist28" (28x28 gray)
    epochs: int = 25  # passes over the training split
    batch_size: int = 64  # images per step
    lr: float = 2e-4  # Adam learning rate of G and D
    beta1: float = 0.5  # Adam beta1 (DCGAN)
    nz: int = 100  # latent dims; z ~ U(-1, 1)^nz
    ema: float = 0.999  # decay of the exponential moving average of G's weights
    holdout: int = 1000  # last sorted images held out (val = first half, test = second half)
    flip: bool = True  # random horizontal flips (faces); off for fmnist28
    seed: int = 0  # seeds weights, shuffling, z and flips
    ckpt_every: int = 500  # steps between checkpoints (and one at each epoch end)
    keep_epochs: bool = False  # also keep a copy of each epoch's checkpoint (checkpoint_epNNN.pt) to choose
    #   the epoch to ship by validation (python -m tools.eval_checkpoints); 90 MB each for dcgan64
    crop_fraction: float = 108 / 178  # CelebA crop convention (1.0 = plain centre square)
    loss: str = "dcgan"  # GAN loss (mimic.priors.losses.list_losses()): "dcgan", "lsgan", "wgan-gp" or "hinge";
    #   "wgan-gp" builds D with layer norm in place of batch norm
    n_critic: int = 1  # D steps per G step (each on a new batch); 5 is the WGAN-GP paper's choice for "wgan-gp"
    spectral_norm: bool = False  # spectral norm on every convolution and linear layer of D
    attention: bool = False  # SAGAN self-attention block at 32x32 in G and D (dcgan64 only)
    ngf: int = 64  # G's width (dcgan64 only; fmnist28 has fixed widths and takes only 64)
    ndf: int = 64  # D's width (dcgan64 only, as ngf)


#: settings a resumed run may change (they do not alter what is trained)
_RESUMABLE_CHANGES = {"epochs", "keep_epochs"}

#: settings that checkpoints made before they existed do not record, and the value such a run was trained with
_ADDED_SETTINGS = {"loss": "dcgan", "n_critic": 1, "spectral_norm": False, "attention": False, "ngf": 64, "ndf": 64}


def check_config(cfg: TrainConfig) -> None:
    """Raise a one-line ValueError naming the first ``TrainConfig`` setting that cannot be trained."""
    if cfg.arch not in ARCHS:
        raise ValueError(f"unknown arch {cfg.arch!r}; valid: {', '.join(ARCHS)}")
    if cfg.loss not in list_losses():
        raise ValueError(f"unknown loss {cfg.loss!r}; valid: {', '.join(list_losses())}")
    if not isinstance(cfg.n_critic, int) or isinstance(cfg.n_critic, bool) or cfg.n_critic < 1:
        raise ValueError(f"n_critic must be an integer >= 1, got {cfg.n_critic!r}")
    if cfg.attention and cfg.arch != "dcgan64":
        raise ValueError(f"attention is only built for arch 'dcgan64' (at 32x32), not {cfg.arch!r}")
    for k in ("ngf", "ndf"):
        v = getattr(cfg, k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
        if cfg.arch != "dcgan64" and v != 64:
            raise ValueError(f"{k} is only built for arch 'dcgan64' (must be 64 for {cfg.arch!r}), got {v}")


def network_options(cfg: dict) -> dict:
    """The settings of :func:`~mimic.priors.models.build_gan` a run with train config ``cfg`` (a dict, as
    checkpoints store it; older ones lack the later settings) builds its networks with."""
    c = {**_ADDED_SETTINGS, **cfg}
    return {"nz": c["nz"], "ngf": c["ngf"], "ndf": c["ndf"], "d_norm": "layer" if c["loss"] == "wgan-gp" else "batch",
            "spectral_norm": c["spectral_norm"], "attention": c["attention"]}


def load_training_data(data: str | os.PathLike, arch: str, *, holdout: int, crop_fraction: float):
    """Returns (train uint8 (N,H,W,C), split description dict)."""
    data = Path(data)
    if arch == "fmnist28":
        root = data if (data / "train-images-idx3-ubyte.gz").exists() or (data / "train-images-idx3-ubyte").exists() else data / "fashion-mnist"
        x, _ = load_fmnist(root, "train")
        return x, {"train": {"n": len(x), "source": "official train set (60,000)"},
                   "heldout": {"n": 10000, "source": "official t10k test set, never trained on"}}
    files = list_images(data)
    if not files:
        raise FileNotFoundError(f"{data}: no images found")
    split = split_files(files, holdout=holdout)
    _, _, nc, res = ARCHS[arch]
    x = load_image_folder(split.train, size=res, crop_fraction=crop_fraction, channels=nc)
    desc = split.describe(names=lambda p: Path(p).relative_to(data).as_posix())
    desc["rule"] = f"files sorted by relative path; the last {holdout} are held out (val = first half, test = second half)"
    return x, desc


def _rng_state(gen: torch.Generator) -> torch.Tensor:
    return gen.get_state()


def _save_ckpt(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def train_prior(data: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig = TrainConfig(), *,
                device: str = "cpu", resume: bool = False, max_steps: int | None = None,
                progress: bool = True, train_images: np.ndarray | None = None) -> dict:
    """Train a GAN prior; returns a summary dict (losses, timing, paths).

    Parameters
    ----------
    data : path
        A folder of images (CelebA crop convention) or a folder with Fashion-MNIST IDX files.
    out : path
        Output folder: ``checkpoint.pt``, ``samples/epoch_XXX.png``, ``split.json``,
        ``history.json`` and, at the end, the exported prior (see :func:`export_prior`).
    resume : bool
        Continue from ``out/checkpoint.pt``.
    max_steps : int, optional
        Stop after this many steps in this call (for tests and time-boxed runs); the
        checkpoint is written so that a later ``resume`` continues exactly.
    train_images : ndarray, optional
        uint8 (N, H, W, C) images to train on instead of reading ``data``.
    """
    check_config(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    if train_images is None:
        x_u8, split_desc = load_training_data(data, cfg.arch, holdout=cfg.holdout, crop_fraction=cfg.crop_fraction)
    else:
        x_u8, split_desc = train_images, {"train": {"n": len(train_images), "source": "given array"}}
    X = to_tensor(x_u8)  # (N, C, H, W) in [-1, 1], on CPU
    n = X.shape[0]
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{n} training images is fewer than one batch of {cfg.batch_size}")

    torch.manual_seed(cfg.seed)
    G, D = build_gan(cfg.arch, **network_options(asdict(cfg)))
    init_dcgan_weights(G)
    init_dcgan_weights(D)
    G.to(device=device, memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
    D.to(device=device, memory_format=torch.channels_last)
    G_ema = copy.deepcopy(G).eval()
    for p in G_ema.parameters():
        p.requires_grad_(False)
    optG = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling, z, flips (CPU)
    fixed_z = torch.rand(64, cfg.nz, generator=torch.Generator().manual_seed(1234)) * 2 - 1
    epoch, step_in_epoch, global_step = 0, 0, 0
    perm = None
    history: list[dict] = []
    elapsed = 0.0
    if resume and ckpt_path.exists():
        st = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = {**_ADDED_SETTINGS, **st["config"]}
        if saved != asdict(cfg):
            diff = {k: (saved.get(k), v) for k, v in asdict(cfg).items()
                    if saved.get(k) != v and k not in _RESUMABLE_CHANGES}
            if diff:
                raise ValueError(f"{ckpt_path}: checkpoint was made with other settings {diff}")
        G.load_state_dict(st["G"]), D.load_state_dict(st["D"]), G_ema.load_state_dict(st["G_ema"])
        optG.load_state_dict(st["optG"]), optD.load_state_dict(st["optD"])
        gen.set_state(st["gen"])
        epoch, step_in_epoch, global_step = st["epoch"], st["step_in_epoch"], st["global_step"]
        perm, history, elapsed = st["perm"], st["history"], st["elapsed"]
    elif resume:
        print(f"note: {ckpt_path} not found; starting from scratch", file=sys.stderr)
    save_json(out / "split.json", split_desc)

    def checkpoint():
        _save_ckpt(ckpt_path, {
            "config": asdict(cfg), "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
            "optG": optG.state_dict(), "optD": optD.state_dict(), "gen": _rng_state(gen),
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "perm": perm, "history": history, "elapsed": elapsed,
        })

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    prog = Progress(TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not progress)
    steps_this_call = 0
    t_start = time.perf_counter()
    sum_d = sum_g = 0.0
    cnt = cnt_g = 0
    gp_weight = GP_WEIGHT.get(cfg.loss, 0.0)
    with prog:
        task = prog.add_task("train", total=steps_per_epoch, epoch=epoch + 1, epochs=cfg.epochs, info="")
        while epoch < cfg.epochs:
            if perm is None:
                perm = torch.randperm(n, generator=gen)
            prog.update(task, completed=step_in_epoch, epoch=epoch + 1)
            G.train(), D.train()
            t_epoch = time.perf_counter()
            while step_in_epoch < steps_per_epoch:
                if max_steps is not None and steps_this_call >= max_steps:
                    elapsed += time.perf_counter() - t_start
                    checkpoint()
                    return {"stopped_at_step": global_step, "epoch": epoch, "history": history}
                idx = perm[step_in_epoch * cfg.batch_size : (step_in_epoch + 1) * cfg.batch_size]
                real = X[idx]
                z = torch.rand(cfg.batch_size, cfg.nz, generator=gen) * 2 - 1
                if cfg.flip:
                    flip = torch.rand(cfg.batch_size, generator=gen) < 0.5
                    real = torch.where(flip[:, None, None, None], real.flip(-1), real)
                real, z = real.to(device).contiguous(memory_format=torch.channels_last), z.to(device)
                g_step = (global_step + 1) % cfg.n_critic == 0  # G learns after every n_critic-th D step
                # discriminator (critic) step; D sees the real batch first, then the fake one (batch norm's order)
                with torch.set_grad_enabled(g_step):
                    fake = G(z)
                lossD = d_loss(cfg.loss, D(real), D(fake.detach()))
                if gp_weight:
                    lossD = lossD + gp_weight * gradient_penalty(D, real, fake.detach(), generator=gen)
                optD.zero_grad(set_to_none=True)
                lossD.backward()
                optD.step()
                if g_step:  # generator step, on the same z
                    lossG = g_loss(cfg.loss, D(fake))
                    optG.zero_grad(set_to_none=True)
                    lossG.backward()
                    optG.step()
                    with torch.no_grad():
                        for pe, p in zip(G_ema.parameters(), G.parameters()):
                            pe.lerp_(p, 1.0 - cfg.ema)
                        for be, b in zip(G_ema.buffers(), G.buffers()):
                            be.copy_(b)
                    sum_g += float(lossG.detach())
                    cnt_g += 1
                sum_d += float(lossD.detach())
                cnt += 1
                step_in_epoch += 1
                global_step += 1
                steps_this_call += 1
                if global_step % 20 == 0:
                    ips = cnt * cfg.batch_size / max(time.perf_counter() - t_epoch, 1e-9)
                    prog.update(task, completed=step_in_epoch,
                                info=f"D {sum_d / cnt:.3f}  G {sum_g / max(cnt_g, 1):.3f}  {ips:.0f} img/s")
                if global_step % cfg.ckpt_every == 0:
                    elapsed += time.perf_counter() - t_start
                    t_start = time.perf_counter()
                    checkpoint()
            # end of epoch
            ep_time = time.perf_counter() - t_epoch
            history.append({"epoch": epoch + 1, "lossD": sum_d / max(cnt, 1), "lossG": sum_g / max(cnt_g, 1),
                            "steps": global_step, "epoch_seconds": ep_time})
            sum_d = sum_g = 0.0
            cnt = cnt_g = 0
            with torch.no_grad():
                G.eval()
                save_png(out / "samples" / f"epoch_{epoch + 1:03d}.png",
                         make_grid(to_uint8(G(fixed_z.to(device))), ncol=8))
                G.train()
            epoch += 1
            step_in_epoch = 0
            perm = None
            elapsed += time.perf_counter() - t_start
            t_start = time.perf_counter()
            checkpoint()
            if cfg.keep_epochs:
                tmp = out / f".checkpoint_ep{epoch:03d}.pt.tmp"
                shutil.copyfile(ckpt_path, tmp)
                os.replace(tmp, out / f"checkpoint_ep{epoch:03d}.pt")
            save_json(out / "history.json", history)
            console.log(f"epoch {epoch}/{cfg.epochs}: D {history[-1]['lossD']:.3f} G {history[-1]['lossG']:.3f} "
                        f"({ep_time:.0f} s)")
    summary = {"epochs": epoch, "steps": global_step, "train_seconds": elapsed, "history": history,
               "hardware": _hardware(device), "config": asdict(cfg), "split": split_desc}
    save_json(out / "train_summary.json", summary)
    return summary


def _hardware(device: str) -> str:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def export_prior(ckpt: str | os.PathLike, out: str | os.PathLike, *, use_ema: bool = True) -> dict:
    """Write ``generator.safetensors``, ``discriminator.safetensors`` and ``config.json`` from a checkpoint, and the
    sha256 of both weight files into ``card.json`` (kept or created; ``load_prior`` checks the weights against it).

    ``config.json`` records the settings the networks were built with (``nz``, ``ngf``, ``ndf``, ``d_norm``,
    ``spectral_norm``, ``attention``; what ``load_prior`` rebuilds them from) and the training ``loss``."""
    from safetensors.torch import save_file

    st = torch.load(ckpt, map_location="cpu", weights_only=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    g = st["G_ema"] if use_ema else st["G"]
    if use_ema:
        g = recalibrate_bn(g, st["config"])
    for name, sd in (("generator", g), ("discriminator", st["D"])):
        tmp = out / f".{name}.safetensors.tmp"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp))
        os.replace(tmp, out / f"{name}.safetensors")
    cfg = st["config"]
    conf = {"arch": cfg["arch"], **network_options(cfg), "loss": cfg.get("loss", _ADDED_SETTINGS["loss"]),
            "generator_weights": "ema" if use_ema else "raw",
            "epochs": st["epoch"], "steps": st["global_step"], "seed": cfg["seed"], "train_config": cfg,
            "train_seconds": st["elapsed"]}
    save_json(out / "config.json", conf)
    from . import sha256_file

    card_path = out / "card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    card["sha256"] = {f: sha256_file(out / f) for f in ("generator.safetensors", "discriminator.safetensors")}
    save_json(card_path, card)
    return conf


@torch.no_grad()
def recalibrate_bn(state_dict: dict, cfg: dict, *, batches: int = 100, batch_size: int = 256, seed: int = 0) -> dict:
    """Batch-norm statistics that match a generator's (EMA) weights.

    The moving-average weights were never run in train mode, so the running statistics copied
    from the raw generator do not fit them; re-estimate them (cumulative average over
    ``batches`` batches of z ~ U(-1, 1)).
    """
    G, _ = build_gan(cfg["arch"], **network_options(cfg))
    G.load_state_dict(state_dict)
    for m in G.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.reset_running_stats()
            m.momentum = None
    G.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        G(torch.rand(batch_size, cfg["nz"], generator=gen) * 2 - 1)
    return G.state_dict()


def train_classifier(data: str | os.PathLike, out: str | os.PathLike, *, epochs: int = 15, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """Train :class:`FMNISTClassifier` on the Fashion-MNIST train set; report test accuracy.

    Writes ``classifier.safetensors``, ``config.json`` and ``card.json`` (its sha256) into ``out``.
    """
    from safetensors.torch import save_file

    data = Path(data)
    root = data if (data / "train-images-idx3-ubyte.gz").exists() else data / "fashion-mnist"
    xtr, ytr = load_fmnist(root, "train")
    xte, yte = load_fmnist(root, "test")
    Xtr, Xte = to_tensor(xtr), to_tensor(xte)
    Ytr, Yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = FMNISTClassifier().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * (len(Xtr) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr * 3, total_steps=steps)
    t0 = time.perf_counter()
    history = []
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(Xtr), generator=gen)
        tot = 0.0
        for i in range(len(Xtr) // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            xb = Xtr[idx]
            # light augmentation: flips and 2-pixel shifts
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(xb.to(device)), Ytr[idx].to(device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
        acc = evaluate_classifier(model, Xte, Yte, device=device)
        history.append({"epoch": ep + 1, "loss": tot / (len(Xtr) // batch_size), "test_accuracy": acc})
        if progress:
            print(f"epoch {ep + 1}/{epochs}: loss {history[-1]['loss']:.4f} test acc {acc:.2f}%", file=sys.stderr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".classifier.safetensors.tmp"
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, out / "classifier.safetensors")
    summary = {"arch": "fmnist_classifier", "epochs": epochs, "seed": seed, "test_accuracy": history[-1]["test_accuracy"],
               "train_seconds": time.perf_counter() - t0, "hardware": _hardware(device), "history": history}
    save_json(out / "config.json", summary)
    from . import sha256_file

    card_path = out / "card.json"  # the sha256 that load_classifier checks the weights against
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    card["sha256"] = {"classifier.safetensors": sha256_file(out / "classifier.safetensors")}
    save_json(card_path, card)
    return summary


@torch.no_grad()
def evaluate_classifier(model, X: torch.Tensor, Y: torch.Tensor, *, device="cpu", batch_size: int = 1000) -> float:
    """Accuracy in percent of ``model`` on X (N,1,28,28) in [-1,1] with labels Y (N,)."""
    model.eval()
    correct = 0
    for i in range(0, len(X), batch_size):
        correct += int((model(X[i : i + batch_size].to(device)).argmax(1).cpu() == Y[i : i + batch_size]).sum())
    return 100.0 * correct / len(X)
