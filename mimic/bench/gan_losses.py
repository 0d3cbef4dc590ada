"""`mimic bench gan-losses`: the GAN training losses of a prior compared at an equal, stated compute budget.

Each loss (:func:`mimic.priors.losses.list_losses`: ``dcgan``, ``lsgan``, ``wgan-gp``, ``hinge``) trains a
``dcgan64`` prior from scratch with the same seed, batch size, data and optimiser (Adam, lr 2e-4, beta1 0.5) for the
same budget: ``steps`` generator steps, or ``minutes`` of training wall time (trained in chunks, each resuming the
checkpoint, until the time is used). WGAN-GP takes 5 critic steps per generator step (Gulrajani et al.'s choice;
:data:`N_CRITIC`), the others one. Each run lives in ``OUT/runs/<loss>/`` (checkpoint, sample grid per epoch, the
exported prior) and is measured as exported: the moving-average generator (batch norm recalibrated), or with
``weights="raw"`` the generator's own weights; ``"auto"`` (the default) takes the raw weights of a run shorter than
the average's horizon (1 / (1 - ema) generator steps: 1000 at the trainer's 0.999), where the average still mostly
holds the initial weights, and the average otherwise:

- projection PSNR and SSIM (PGD, the engine's default latent budget) on ``n`` held-out *test* faces (the prior
  report's split: the last ``holdout`` sorted images are held out, the second half of them is the test split), with
  95% intervals: :func:`mimic.priors.report.prior_report`;
- D's ROC AUC on those faces against ``n`` generated images (rank-based, so it reads any loss's score);
- the sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018;
  :func:`mimic.metrics.sliced_wasserstein`) between ``n`` generated images and the same ``n`` faces, x1e3 per
  level (64, 32, 16) and averaged.

Writes ``OUT/gan_losses.json`` (settings, hardware, versions, the data split, one row per loss),
``OUT/gan_losses.md`` (the table) and ``OUT/samples.png`` (one row of 8 samples per loss from the same fixed z;
the samples also in ``OUT/samples.npz``). A re-run into the same folder with the same settings continues runs that
have not used the budget, keeps the rows of finished losses and of losses it does not run, and measures the rest.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..io import labeled_grid, save_json, save_png, save_text, to_uint8
from ..metrics import format_ci, sliced_wasserstein
from ..priors.losses import list_losses
from .report_utils import QUICK_SCHEDULE, earlier_run, load_samples, save_samples

__all__ = ["bench_gan_losses", "train_for_budget", "markdown_table", "LOSSES", "N_CRITIC", "DEFAULT_STEPS",
           "QUICK_STEPS", "SWD_SETTINGS"]

#: the losses, in the table's order
LOSSES = tuple(list_losses())
#: D steps per G step of the losses that take more than one (Gulrajani et al. 2017's choice for WGAN-GP)
N_CRITIC = {"wgan-gp": 5}
#: the budget when neither ``steps`` nor ``minutes`` is given: generator steps per loss
DEFAULT_STEPS = 3000
#: the budget of a ``quick`` run (a smoke run): generator steps per loss
QUICK_STEPS = 4
#: at most this many held-out faces in a ``quick`` run
QUICK_FACES = 8
#: Karras et al.'s SWD settings (per pyramid level: 128 7x7 neighbourhoods per image; random directions per repetition)
SWD_SETTINGS = {"patch": 7, "patches_per_image": 128, "projections": 512, "repeats": 4}
#: epochs of every run: not a limit (the budget stops training)
_EPOCHS = 1_000_000
#: at most this many seconds of training per chunk of a ``minutes`` budget (between two looks at the clock)
_CHUNK_SECONDS = 300.0
#: the fixed z of the sample rows (the trainer's sample grid's seed)
_SAMPLE_SEED = 1234
#: the generators a run can be measured with (``weights``)
WEIGHTS = ("auto", "ema", "raw")


def _swd_levels(resolution: int) -> list[int]:
    """Karras et al.'s pyramid levels: the resolutions from the image's down to 16 (64, 32, 16 for 64x64)."""
    out, r = [], resolution
    while r >= 16:
        out.append(r)
        r //= 2
    return out


def _options(loss: str, spectral_norm: bool, attention: bool) -> str:
    """The table's options cell of a loss: its D steps per G step and what D (and G) are built with."""
    parts = [f"n_critic {N_CRITIC.get(loss, 1)}"]
    if loss == "wgan-gp":
        parts.append("D layer norm")
    if spectral_norm:
        parts.append("spectral norm")
    if attention:
        parts.append("attention")
    return ", ".join(parts)


def _check_count(name: str, v, lo: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def _checkpoint_state(run_dir: Path) -> tuple[int, float]:
    """(D steps trained, training seconds) of the checkpoint in ``run_dir``; (0, 0.0) without one."""
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.exists():
        return 0, 0.0
    st = torch.load(ckpt, map_location="cpu", weights_only=False)
    return int(st["global_step"]), float(st["elapsed"])


def train_for_budget(run_dir, cfg, train_images: np.ndarray, *, steps: int | None = None, seconds: float | None = None,
                     device: str = "cpu", log=print) -> dict:
    """Train (or continue) the prior of ``run_dir`` until a budget is used.

    Parameters
    ----------
    run_dir : path
        The run's folder (``checkpoint.pt``; continued when present, with the same settings).
    cfg : TrainConfig
        The training settings (``epochs`` is not a limit here: pass a large one).
    train_images : ndarray
        uint8 (N, H, W, C) training images.
    steps : int, optional
        Generator steps (``cfg.n_critic`` D steps each); refused when the checkpoint holds more.
    seconds : float, optional
        Training wall time, as the checkpoint counts it (``elapsed``: across resumes): trained in chunks sized
        from the measured time per step until it is used (the last chunk may overshoot a little).
    device : str
    log : callable

    Returns
    -------
    dict
        ``{"g_steps", "d_steps", "train_seconds"}`` reached.
    """
    from ..priors.train import train_prior

    if (steps is None) == (seconds is None):
        raise ValueError("give one budget: steps or seconds")
    run_dir = Path(run_dir)
    nc = cfg.n_critic
    done, elapsed = _checkpoint_state(run_dir)

    def chunk(d_steps: int) -> None:
        nonlocal done, elapsed
        train_prior(None, run_dir, cfg, device=device, resume=(run_dir / "checkpoint.pt").exists(),
                    max_steps=d_steps, progress=False, train_images=train_images)
        done, elapsed = _checkpoint_state(run_dir)
        log(f"{run_dir.name:8s} {done // nc} G steps, {elapsed / 60:.2f} min")

    if steps is not None:
        if done > steps * nc:
            raise ValueError(f"{run_dir} holds {done // nc} generator steps, more than the budget steps={steps}; "
                             "give another output folder")
        if done < steps * nc:
            chunk(steps * nc - done)
    else:
        while elapsed < seconds:
            if done == 0:
                d = 10 * nc  # a first chunk measures the time per step
            else:
                rate = max(elapsed / done, 1e-6)  # seconds per D step
                d = math.ceil(min(seconds - elapsed, _CHUNK_SECONDS) / rate)
                d = math.ceil((done + max(d, 1)) / nc) * nc - done  # to a whole generator step
            chunk(d)
    return {"g_steps": done // nc, "d_steps": done, "train_seconds": elapsed}


def _heldout_test(folder: Path, holdout: int, n: int, size: int):
    """The first ``n`` faces of the held-out test split of ``folder`` (the prior report's and the trainer's rule),
    cropped as the trainer crops: (uint8 (n, size, size, 3), their description, the split's description)."""
    from ..data import list_images, load_image_folder, split_files

    files = list_images(folder)
    if len(files) <= holdout:
        raise ValueError(f"{folder}: {len(files)} images, too few to hold out holdout={holdout} and train on the rest")
    split = split_files(files, holdout=holdout)
    test = split.test[:n]
    if not test:
        raise ValueError(f"{folder}: holdout={holdout} leaves no test faces (the second half of the held-out images)")
    name = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
    desc = split.describe(names=name)
    desc["rule"] = (f"files sorted by relative path; the last {holdout} are held out (val = first half, test = "
                    "second half); trained on the rest")
    return load_image_folder(test, size=size), \
        f"first {len(test)} images of the held-out test split ({name(test[0])}..{name(test[-1])})", desc


def bench_gan_losses(out, *, losses=LOSSES, steps: int | None = None, minutes: float | None = None, n: int = 200,
                     data=None, arch: str = "dcgan64", spectral_norm: bool = False, attention: bool = False,
                     batch_size: int = 64, holdout: int = 1000, seed: int = 0, device="auto", quick: bool = False,
                     widths: tuple[int, int] = (64, 64), weights: str = "auto", log=print) -> dict:
    """Run the benchmark (module docstring); writes ``OUT/gan_losses.json``, ``OUT/gan_losses.md`` and
    ``OUT/samples.png`` after every loss; returns the JSON.

    Parameters
    ----------
    out : path
        Output folder (the runs in ``OUT/runs/<loss>/``).
    losses : sequence of str
        A subset of :data:`LOSSES`.
    steps, minutes : optional
        The budget of each loss: generator steps, or minutes of training wall time (not both; neither:
        :data:`DEFAULT_STEPS` steps).
    n : int
        Held-out test faces (projection, D's AUC) and generated images (SWD).
    data : path, optional
        The image folder to train on and hold faces out of (default: the CelebA folder of the data root).
    arch : str
        ``"dcgan64"`` (the only one measured: 64x64 RGB faces).
    spectral_norm, attention : bool
        Options of every loss's networks (:class:`~mimic.priors.train.TrainConfig`).
    batch_size, holdout, seed : int
        Of every run (the last ``holdout`` sorted images are never trained on).
    device : str
    quick : bool
        A smoke run: :data:`QUICK_STEPS` generator steps per loss (in place of the budget), at most 8 faces and a
        short projection.
    widths : (int, int)
        G's and D's widths (``ngf``, ``ndf``; small ones make quick test models).
    weights : {"auto", "ema", "raw"}
        The generator measured (module docstring).
    log : callable
    """
    from ..api import resolve_device
    from ..data import data_dir
    from ..priors import load_prior
    from ..priors.report import PROJECTION_CONFIG, prior_report
    from ..priors.train import TrainConfig, _hardware, check_config, export_prior, load_training_data

    losses = tuple(dict.fromkeys(losses))
    unknown = [k for k in losses if k not in LOSSES]
    if unknown or not losses:
        raise ValueError(f"unknown loss(es) {unknown}; valid: {', '.join(LOSSES)}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if arch != "dcgan64":
        raise ValueError(f"arch must be 'dcgan64' (the bench measures 64x64 RGB faces), got {arch!r}")
    if steps is not None and minutes is not None:
        raise ValueError("give one budget: steps or minutes, not both")
    if steps is not None:
        _check_count("steps", steps, 1)
    if minutes is not None and not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"minutes must be a finite number > 0, got {minutes!r}")
    for name, v, lo in (("n", n, 2), ("batch_size", batch_size, 1), ("holdout", holdout, 2), ("seed", seed, 0)):
        _check_count(name, v, lo)
    if quick or (steps is None and minutes is None):
        steps, minutes = (QUICK_STEPS if quick else DEFAULT_STEPS), None
    budget = {"g_steps": steps} if steps is not None else {"minutes": float(minutes)}
    n = min(n, QUICK_FACES) if quick else n
    ngf, ndf = widths

    def config(loss: str) -> TrainConfig:
        return TrainConfig(arch=arch, epochs=_EPOCHS, batch_size=batch_size, seed=seed, holdout=holdout, loss=loss,
                           n_critic=N_CRITIC.get(loss, 1), spectral_norm=spectral_norm, attention=attention,
                           ngf=ngf, ndf=ndf)

    for loss in losses:
        check_config(config(loss))  # before any data is read
    out = Path(out)
    dev = resolve_device(device)
    folder = data_dir("celeba", data)
    real_u8, faces, split = _heldout_test(folder, holdout, n, 64)
    if split["train"]["n"] < batch_size:
        raise ValueError(f"{folder}: {split['train']['n']} training images (after holdout={holdout}), fewer than "
                         f"one batch of batch_size={batch_size}")
    proj_cfg = PROJECTION_CONFIG.replace(**{k: QUICK_SCHEDULE[k] for k in ("warm_steps", "T", "T2")}) if quick \
        else PROJECTION_CONFIG
    levels = _swd_levels(real_u8.shape[1])
    settings = {"arch": arch, "budget": budget, "seed": seed, "batch_size": batch_size, "n": n, "holdout": holdout,
                "data": "the data root's celeba/" if data is None else Path(str(data)).name,  # no local path
                "split": split, "faces": faces, "spectral_norm": spectral_norm, "attention": attention,
                "widths": [ngf, ndf], "weights": weights, "n_critic": {k: N_CRITIC.get(k, 1) for k in LOSSES},
                "quick": quick,
                "optimizer": "Adam lr 2e-4, betas (0.5, 0.999), for G and D of every loss",
                "projection": {"method": "pgd", "latent_steps": proj_cfg.latent_steps(), "restarts": proj_cfg.restarts},
                "swd": {**SWD_SETTINGS, "levels": levels, "seed": seed}, "device": str(dev),
                "hardware": _hardware(str(dev)), "threads": torch.get_num_threads(), "torch": torch.__version__,
                "mimic": __version__}
    same = {k: settings[k] for k in ("arch", "budget", "seed", "batch_size", "n", "holdout", "data", "split", "faces",
                                     "spectral_norm", "attention", "widths", "n_critic", "quick", "projection", "swd",
                                     "weights")}
    if minutes is not None:  # a time budget buys other steps on other hardware
        same["hardware"] = settings["hardware"]
    old = earlier_run(out / "gan_losses.json", same)
    rows = old["results"] if old else []
    result = {"bench": "gan-losses", "settings": settings, "results": rows}
    samples = load_samples(out / "samples.npz") if old else {}
    train_u8 = None
    for loss in losses:
        cfg, run_dir = config(loss), out / "runs" / loss
        kept = next((r for r in rows if r["loss"] == loss), None)
        done, elapsed = _checkpoint_state(run_dir)
        if steps is not None and done > steps * cfg.n_critic:
            raise ValueError(f"{run_dir} holds {done // cfg.n_critic} generator steps, more than the budget "
                             f"steps={steps}; give another output folder")
        needs_training = done < steps * cfg.n_critic if steps is not None else elapsed < minutes * 60
        if kept is not None and not needs_training and kept["d_steps"] == done and loss in samples:
            log(f"{loss:8s} kept ({kept['g_steps']} G steps)")
            continue
        if needs_training or not (run_dir / "config.json").exists():
            if train_u8 is None:  # read once, for every loss
                train_u8, _ = load_training_data(folder, arch, holdout=holdout, crop_fraction=cfg.crop_fraction)
            trained = train_for_budget(run_dir, cfg, train_u8, steps=steps,
                                       seconds=None if minutes is None else minutes * 60, device=str(dev), log=log)
        else:
            d, secs = _checkpoint_state(run_dir)
            trained = {"g_steps": d // cfg.n_critic, "d_steps": d, "train_seconds": secs}
        conf_path = run_dir / "config.json"
        use = weights if weights != "auto" else ("raw" if trained["g_steps"] < 1 / (1 - cfg.ema) else "ema")
        conf = json.loads(conf_path.read_text()) if conf_path.exists() else {}
        if conf.get("steps") != trained["d_steps"] or conf.get("generator_weights") != use:
            export_prior(run_dir / "checkpoint.pt", run_dir, use_ema=use == "ema")  # EMA: batch norm recalibrated
        t0 = time.perf_counter()
        q = prior_report(run_dir, n=len(real_u8), images=(real_u8, faces), device=str(dev), cfg=proj_cfg,
                         progress=False, groups_per_call=8 if dev.type == "cuda" else 2)
        pr = load_prior(run_dir, device=dev)
        with torch.no_grad():
            z = torch.rand(len(real_u8), pr.nz, generator=torch.Generator().manual_seed(1)) * 2 - 1
            fake_u8 = np.concatenate([to_uint8(pr.G(z[i : i + 100].to(dev))) for i in range(0, len(z), 100)])
            z8 = torch.rand(8, pr.nz, generator=torch.Generator().manual_seed(_SAMPLE_SEED)) * 2 - 1
            samples[loss] = to_uint8(pr.G(z8.to(dev)))
        swd = sliced_wasserstein(real_u8, fake_u8, generator=torch.Generator().manual_seed(seed),
                                 levels=len(levels), **SWD_SETTINGS) * 1e3
        row = {"loss": loss, "options": _options(loss, spectral_norm, attention), "n_critic": cfg.n_critic,
               "generator_weights": use,
               "d_norm": "layer" if loss == "wgan-gp" else "batch", **trained,
               "train_minutes": trained["train_seconds"] / 60, "n_images": q["n_images"],
               **{k: q[k] for k in ("projection_psnr_mean", "projection_psnr_ci95", "projection_ssim_mean",
                                    "projection_ssim_ci95", "d_auc", "d_logit_real_mean", "d_logit_fake_mean")},
               "swd_x1e3": [float(v) for v in swd], "swd_levels": levels, "swd_avg_x1e3": float(swd.mean()),
               "run": f"runs/{loss}", "train_config": asdict(cfg), "measure_seconds": time.perf_counter() - t0,
               "device": str(dev)}
        rows[:] = [r for r in rows if r["loss"] != loss] + [row]
        rows.sort(key=lambda r: LOSSES.index(r["loss"]) if r["loss"] in LOSSES else len(LOSSES))
        log(f"{loss:8s} {row['g_steps']} G steps in {row['train_minutes']:.1f} min: projection "
            f"{row['projection_psnr_mean']:.2f} dB, D AUC {row['d_auc']:.3f}, SWD x1e3 {row['swd_avg_x1e3']:.1f}")
        _write(out, result, samples)  # after every loss: an interrupted run keeps its rows
    _write(out, result, samples)
    return result


def _write(out: Path, result: dict, samples: dict) -> None:
    rows = result["results"]
    save_json(out / "gan_losses.json", result)
    save_text(out / "gan_losses.md", markdown_table(rows, result["settings"]) + "\n")
    shown = [r["loss"] for r in rows if r["loss"] in samples]
    if shown:
        save_samples(out / "samples.npz", {k: samples[k] for k in shown})
        save_png(out / "samples.png", labeled_grid([samples[k] for k in shown], row_labels=shown))


def markdown_table(rows: list[dict], settings: dict) -> str:
    """One line per loss, then what the budget and the figures are."""
    lines = ["| loss | options | G steps | train minutes | G weights | projection PSNR (dB) | projection SSIM | D AUC | "
             "SWD x1e3 (avg) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['options']} | {r['g_steps']} | {r['train_minutes']:.1f} | "
                     f"{r.get('generator_weights', 'ema')} | "
                     f"{format_ci(r['projection_psnr_mean'], r['projection_psnr_ci95'])} | "
                     f"{format_ci(r['projection_ssim_mean'], r['projection_ssim_ci95'], 3)} | {r['d_auc']:.3f} | "
                     f"{r['swd_avg_x1e3']:.1f} |")
    b = settings["budget"]
    budget = (f"{b['g_steps']} generator steps per loss" if "g_steps" in b
              else f"{b['minutes']:g} minutes of training per loss")
    lv = "/".join(str(v) for v in settings["swd"]["levels"])
    lines += ["", f"Budget: {budget} ({settings['hardware']}, {settings['device']}); batch "
                  f"{settings['batch_size']}, seed {settings['seed']}, {settings['optimizer']}. Projection: PGD, "
                  f"{settings['projection']['latent_steps']} latent steps, on {settings['faces']} (mean ± 95% "
                  "interval). D AUC: those faces against as many generated images. SWD: Karras et al. (2018) on "
                  f"Laplacian levels {lv} between as many generated images and the same faces (per level in the "
                  "JSON)." + (" A quick run (a smoke test): no meaningful figure." if settings["quick"] else "")]
    return "\n".join(lines)
