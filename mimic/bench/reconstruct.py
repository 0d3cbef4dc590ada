"""`mimic bench reconstruct`: Pajot et al.'s corruptions against classical and untrained baselines.

Corruptions: remove_pixel (p = 0.9, 0.95), remove_pixel_channel (p = 0.95), convolve_noise
(l = 3, sigma = 0.15), patch_band (h = 20). Methods: MimicGAN (task-agnostic preset, which leaves
detected fill pixels out of the fit; and ``mimic_keep``, whose output keeps the observed pixels of an
observation with detected fill, inpainting's data consistency, and adds the TV-denoised residual y - G(z) to an
observation without), PGD (plain), PGD with the same fill detection
(and ``pgd_keep``, its output keeping the observed pixels as ``mimic_keep``'s does),
the oracle (PGD with the corruption known: L_obs on the pixels it keeps, or through the corruption for
convolve_noise), the ``*_adapt`` variants of MimicGAN, PGD with fill detection and the oracle (generator adaptation
and do-no-harm, ``mimic.tasks.ADAPT``), total-variation denoising (Chambolle, scikit-image; the noise task), biharmonic inpainting
(scikit-image; given the mask), Deep Image Prior (an untrained conv net fitted to the one
observation; masked loss when the mask is known), and the trained reconstructors of ``mimic.reconstructor``:
``uair`` (Pajot et al.'s unsupervised reconstruction, trained from observations only) and ``uair_paired`` (the same
network trained on pairs: a supervised reference), read from ``--reconstructors DIR`` (``DIR/<corruption>`` and
``DIR/<corruption>-paired``, run folders of ``mimic train reconstructor``; a missing one is skipped with a line),
with their images per second. MSE on [-1, 1] (as Pajot et al.'s Table 1) and PSNR on [0, 1].
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..api import recover
from ..corruptions import get_corruption
from ..io import make_grid, read_image, save_json, save_png, save_text, to_tensor, to_uint8
from ..metrics import SSIM_WINDOW, mean_ci95, psnr, ssim
from ..tasks import get_task
from .blind import oracle_solve
from .report_utils import bench_setup, earlier_run, method_overrides, old_ssim_mark, old_ssim_note

__all__ = ["bench_reconstruct", "markdown_table", "CORRUPTIONS", "PAJOT_MSE", "dip", "tv_denoise", "biharmonic"]

# every method, in the order of the table and the figures
METHODS = ("mimic", "mimic_adapt", "mimic_keep", "pgd", "pgd_fill", "pgd_adapt", "pgd_keep", "oracle", "oracle_adapt",
           "tv", "biharmonic", "dip", "uair", "uair_paired")
# name -> (registered corruption, settings)
CORRUPTIONS = {
    "remove_pixel_0.9": ("remove_pixel", {"p": 0.9}),
    "remove_pixel_0.95": ("remove_pixel", {"p": 0.95}),
    "remove_pixel_channel_0.95": ("remove_pixel_channel", {"p": 0.95}),
    "convolve_noise": ("convolve_noise", {"l": 3, "sigma": 0.15}),
    "patch_band": ("patch_band", {"h": 20}),
}
# Pajot et al. (ICLR 2019), Table 1, their unsupervised model, MSE on [-1, 1]
PAJOT_MSE = {"remove_pixel_0.95": 0.0414, "remove_pixel_channel_0.95": 0.0409, "patch_band": 0.0165,
             "convolve_noise": 0.0088}


def tv_denoise(y_u8: np.ndarray, weight: float = 0.1) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    out = [denoise_tv_chambolle(im.astype(np.float64) / 255.0, weight=weight, channel_axis=-1) for im in y_u8]
    return np.clip(np.round(np.stack(out) * 255), 0, 255).astype(np.uint8)


def biharmonic(y_u8: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """keep: bool (N, H, W, C) or (N, H, W, 1), True where the pixel is observed."""
    from skimage.restoration import inpaint_biharmonic

    out = []
    for im, k in zip(y_u8, keep):
        x = im.astype(np.float64) / 255.0
        if k.shape[-1] == 1:
            out.append(inpaint_biharmonic(x, ~k[..., 0], channel_axis=-1))
        else:  # per channel masks
            out.append(np.stack([inpaint_biharmonic(x[..., c], ~k[..., c]) for c in range(x.shape[-1])], -1))
    return np.clip(np.round(np.stack(out) * 255), 0, 255).astype(np.uint8)


class _DIPNet(nn.Module):
    """K independent Deep Image Prior networks (Ulyanov et al.'s encoder-decoder, reduced for 64x64).

    The K networks run as one grouped network: input (1, K*cin, H, W) -> output (1, K*cout, H, W).
    With one image per network, BatchNorm normalises each channel over its own image, the
    convolutions are grouped and Adam is elementwise, so this is exactly K separate fits.
    """

    def __init__(self, cin=32, ch=64, cout=3, k=1):
        super().__init__()

        def blk(a, b, s):
            return nn.Sequential(nn.Conv2d(a * k, b * k, 3, s, 1, groups=k), nn.BatchNorm2d(b * k), nn.LeakyReLU(0.2, True))

        self.down = nn.Sequential(blk(cin, ch, 2), blk(ch, ch, 1), blk(ch, ch, 2), blk(ch, ch, 1))
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), blk(ch, ch, 1),
                                nn.Upsample(scale_factor=2, mode="bilinear"), blk(ch, ch, 1),
                                nn.Conv2d(ch * k, cout * k, 1, groups=k))

    def forward(self, z):
        return torch.tanh(self.up(self.down(z)))


def dip(y: torch.Tensor, keep: torch.Tensor | None, *, steps: int = 1500, lr: float = 1e-2, seed: int = 0,
        chunk: int = 16) -> torch.Tensor:
    """Deep Image Prior: one untrained network fitted to each observation (MSE, masked where ``keep`` is 1).

    Parameters
    ----------
    y : torch.Tensor
        (N, C, H, W) float observations in [-1, 1].
    keep : torch.Tensor or None
        Known mask broadcastable to ``y`` (1 = observed), or None.
    chunk : int
        Networks fitted together (a grouped network; the result does not depend on it except
        through the random initialisation, which is drawn per chunk from ``seed``).

    Returns
    -------
    torch.Tensor
        (N, C, H, W) in [-1, 1].
    """
    outs = []
    n, c, h, w = y.shape
    for s in range(0, n, chunk):
        yi = y[s : s + chunk]
        k = len(yi)
        torch.manual_seed(seed + s)
        net = _DIPNet(cout=c, k=k).to(y.device)
        g = torch.Generator().manual_seed(seed + s)
        z = (torch.rand(1, 32 * k, h, w, generator=g) * 0.1).to(y.device)  # fixed noise input per network
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        target = yi.reshape(1, k * c, h, w)  # (k, C, H, W) -> (1, k*C, H, W)
        ki = None if keep is None else keep[s : s + chunk].to(y).expand_as(yi).reshape(1, k * c, h, w)
        with torch.enable_grad():
            for _ in range(steps):
                err = ((net(z) - target) ** 2).view(k, c * h * w)  # per network
                if ki is None:
                    loss = err.mean(1).sum()
                else:
                    kk = ki.reshape(k, c * h * w)
                    loss = ((err * kk).sum(1) / kk.sum(1).clamp(min=1)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            outs.append(net(z).view(k, c, h, w))
    return torch.cat(outs)


def _trained_reconstructor(folder, cname, method, reg, corr, dev, trust_unverified):
    """The reconstructor trained for corruption ``cname`` (``folder/cname``, ``folder/cname-paired``), or None;
    one trained for other corruption settings is refused."""
    from ..inputs import InputError
    from ..reconstructor import load_reconstructor

    if folder is None:
        return None
    path = Path(folder) / (cname + ("-paired" if method == "uair_paired" else ""))
    if not path.is_dir():
        return None
    rc = load_reconstructor(path, device=dev, trust_unverified=trust_unverified)
    want = (reg, corr.params(), "paired" if method == "uair_paired" else "unsupervised")
    got = (rc.config["corruption"], rc.config.get("corruption_params", {}), rc.config["variant"])
    if got != want:
        raise InputError(f"{path}: trained for {got}, not {want}")
    return rc


def bench_reconstruct(out, *, prior="celeba64", corruptions=tuple(CORRUPTIONS), n: int = 200, device="auto",
                      seed: int = 0, methods=METHODS, data=None, quick: bool = False, dip_steps: int = 1500,
                      dip_n: int | None = None, overrides: dict | None = None, log=print,
                      trust_unverified: bool = False, reconstructors=None) -> dict:
    """Run the benchmark; writes ``OUT/reconstruct.json`` and ``OUT/reconstruct.md``.

    A run into a folder that already holds ``reconstruct.json`` from the same settings (faces, seed, prior,
    overrides, DIP schedule) keeps that run's rows of the methods it does not repeat (their per-image figures
    too, and their rows of the figures, cut from the earlier figure), so a change that touches some methods
    (a preset) re-runs only those: ``--methods mimic,mimic_keep``. ``seconds`` then adds the kept rows' seconds
    to this run's.
    """
    from ..inputs import InputError
    from ..priors.report import heldout_images

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise InputError(f"unknown corruption(s) {', '.join(unknown)}; valid: {', '.join(CORRUPTIONS)}")
    out, dev, pr, overrides = bench_setup(out, prior, device, overrides, quick,
                                          trust_unverified=trust_unverified)
    if quick:
        n, dip_steps = min(n, 4), min(dip_steps, 20)
    clean_u8, source = heldout_images(pr, n, data=data, which="test")
    clean = to_tensor(clean_u8)
    rows, per_image, figures = [], {}, {}
    settings = {"prior": pr.name, "prior_sha256": pr.sha256, "faces": source, "n": len(clean_u8), "seed": seed,
                "device": str(dev), "overrides": overrides, "dip_steps": dip_steps, "dip_n": dip_n, "quick": quick}
    old_rows, old_per_image, old_figures = _earlier_run(out, settings)
    # the earlier run's corruptions that this one does not repeat keep their rows, per-image figures and figures
    kept = [c for c in dict.fromkeys(c for c, _ in old_rows) if c not in corruptions]
    kept_seconds = sum(r["seconds"] for (c, m), r in old_rows.items() if c in kept or m not in methods)
    t_all = time.perf_counter()
    order = [*CORRUPTIONS, *(c for c in kept if c not in CORRUPTIONS)]

    def save():  # after every corruption: an interrupted run keeps its rows
        allrows = sorted(rows + [r for (c, _), r in old_rows.items() if c in kept],
                         key=lambda r: order.index(r["corruption"]))  # stable: methods keep their order
        result = {"bench": "reconstruct", "results": allrows, "settings": settings,
                  "figures": {**{c: old_figures[c] for c in kept if c in old_figures}, **figures},
                  "versions": {"mimic": __version__, "torch": torch.__version__, "python": platform.python_version()},
                  "seconds": time.perf_counter() - t_all + kept_seconds,
                  "per_image": {**{c: old_per_image[c] for c in kept if c in old_per_image}, **per_image}}
        save_json(out / "reconstruct.json", result)
        save_text(out / "reconstruct.md", markdown_table(allrows))
        return result

    for cname in corruptions:
        reg, kw = CORRUPTIONS[cname]
        corr = get_corruption(reg, **kw)
        y = corr(clean, generator=torch.Generator().manual_seed(seed))
        keep = corr.known_mask(clean, y)
        y_u8 = to_uint8(y)
        keep_np = None if keep is None else keep.expand_as(y).permute(0, 2, 3, 1).numpy() > 0.5
        per_image[cname], recs = {}, {}
        old_grid = _figure_rows(out, old_figures.get(cname))  # method -> its row of the earlier figure
        # the requested methods and the earlier run's other ones, in the bench's method order
        for m in sorted(set(methods) | {om for (c, om) in old_rows if c == cname},
                        key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS)):
            if m not in methods:  # kept from the earlier run
                rows.append(old_rows[cname, m])
                per_image[cname][m] = old_per_image[cname][m]
                if m in old_grid:
                    recs[m] = old_grid[m]
                continue
            if m == "tv" and reg != "convolve_noise":
                continue
            if m == "biharmonic" and keep is None:
                continue
            t0 = time.perf_counter()
            if m in ("mimic", "mimic_adapt", "mimic_keep", "pgd", "pgd_fill", "pgd_adapt", "pgd_keep"):
                # pgd: plain GAN inversion (every pixel fitted); pgd_fill: PGD with the blind preset's fill
                # detection, which MimicGAN also uses: the two rows separate the detection from the surrogate;
                # mimic_keep: MimicGAN whose output keeps the observed (not fill) pixels of an observation with fill
                # and adds the TV-denoised residual y - G(z) to one without (keep_observed, keep_tv);
                # pgd_keep: the same for pgd_fill (separates what keeping gains from what the surrogate adds to it);
                # *_adapt: with the generator adaptation and do-no-harm of mimic.tasks.ADAPT (pgd_adapt: pgd_fill's)
                # (pgd, pgd_fill and pgd_keep are plain inversions: no adaptation, whatever the preset has)
                ov = {"fill": False, **overrides} if m == "pgd" else overrides
                ov = {"keep_observed": True, **ov} if m in ("mimic_keep", "pgd_keep") else ov
                _, ov = method_overrides(("pgd" if m.startswith("pgd") else "mimic")
                                         + ("_adapt" if m.endswith("_adapt") else ""), ov)
                rec = recover(y_u8, task=None, method="pgd" if m.startswith("pgd") else "mimic", prior=pr,
                              device=dev, seed=seed, **ov).images
            elif m in ("oracle", "oracle_adapt"):  # the corruption known: its mask, or through it (convolve_noise)
                cfg = get_task(None).config.replace(**method_overrides(m, overrides)[1])
                rec = oracle_solve(pr, corr, cfg, y_u8, dev, 25, seed, masks=keep)
            elif m in ("uair", "uair_paired"):  # a trained network, one forward pass
                rc = _trained_reconstructor(reconstructors, cname, m, reg, corr, dev, trust_unverified)
                if rc is None:
                    log(f"{cname:26s} {m:12s} skipped: no trained reconstructor in {reconstructors}")
                    continue
                t0 = time.perf_counter()
                rec = rc.recover_uint8(y_u8)
            elif m == "tv":
                rec = tv_denoise(y_u8)
            elif m == "biharmonic":
                rec = biharmonic(y_u8, keep_np)
            elif m == "dip":  # one network per image: on a CPU, --dip-n limits it to the first images
                nd = len(y_u8) if dip_n is None else min(dip_n, len(y_u8))
                rec = to_uint8(dip(to_tensor(y_u8[:nd]).to(dev), None if keep is None else keep[:nd].to(dev),
                                   steps=dip_steps, seed=seed))
            else:
                raise ValueError(f"unknown method {m!r}")
            secs = time.perf_counter() - t0
            nr = len(rec)  # every image, or DIP's first dip_n
            mse_pm1 = ((to_tensor(rec) - clean[:nr]) ** 2).mean(dim=(1, 2, 3)).numpy()  # on [-1, 1]
            p, s = psnr(rec, clean_u8[:nr]), ssim(rec, clean_u8[:nr])
            row = {"task": cname, "corruption": cname, "method": m, "n": len(p)}
            for k, v in (("mse", mse_pm1), ("psnr", p), ("ssim", s)):
                row[f"{k}_mean"], row[f"{k}_ci95"] = mean_ci95(v)
            row["ssim_window"] = SSIM_WINDOW
            row["seconds"] = secs
            row["device"] = str(dev)
            if m.startswith("uair"):  # what the network cost to train, and which one it is
                tr = rc.card.get("training", {})
                hist = tr.get("history") or []
                row["reconstructor"] = {"path": rc.path, "sha256": rc.sha256, "epochs": tr.get("epochs"),
                                        "batch_size": tr.get("batch_size"), "steps": tr.get("steps"),
                                        "val_mse_by_epoch": [h.get("val_mse") for h in hist],
                                        "val_curve": tr.get("val_curve") or [], "n_val": tr.get("n_val"),
                                        "train_images": (tr.get("split") or {}).get("train", {}).get("n"),
                                        "train_seconds": tr.get("train_seconds"), "hardware": tr.get("hardware")}
            if cname in PAJOT_MSE:
                row["pajot_unsupervised_mse"] = PAJOT_MSE[cname]
            rows.append(row)
            per_image[cname][m] = {"mse": mse_pm1.tolist(), "psnr": p.tolist(), "ssim": s.tolist()}
            log(f"{cname:26s} {m:10s} MSE {row['mse_mean']:.4f}  PSNR {row['psnr_mean']:.2f}  ({secs:.0f} s)")
            recs[m] = rec[:8]
        # one figure per corruption: rows observed / each method / clean, first 8 faces
        k8 = min(8, len(y_u8), *(len(r) for r in recs.values()))
        save_png(out / "figures" / f"{cname}.png",
                 make_grid(np.concatenate([y_u8[:k8], *(r[:k8] for r in recs.values()), clean_u8[:k8]]), ncol=k8))
        figures[cname] = {"file": f"figures/{cname}.png", "rows": ["observed", *recs, "clean"]}
        result = save()
    return result


def _earlier_run(out: Path, settings: dict) -> tuple[dict, dict, dict]:
    """Rows ``{(corruption, method): row}``, per-image figures and figure entries of ``out/reconstruct.json`` if it
    was written with the same settings (the device aside) and prior weights, else empty."""
    same = {k: v for k, v in settings.items() if k not in ("device", "prior_sha256")}
    old = earlier_run(out / "reconstruct.json", same, prior_sha256=settings["prior_sha256"])
    if old is None or "per_image" not in old:
        return {}, {}, {}
    return {(r["corruption"], r["method"]): r for r in old["results"]}, old["per_image"], old.get("figures", {})


def _figure_rows(out: Path, fig: dict | None, pad: int = 2) -> dict:
    """Method -> (k, H, W, 3) uint8 row of an earlier figure (``make_grid``'s layout, one row per entry of
    ``fig["rows"]``; the first is the observation, the last the clean faces); empty if there is none."""
    if not fig or not (out / fig["file"]).exists():
        return {}
    grid = read_image(out / fig["file"])  # (rows*(H+pad)+pad, k*(W+pad)+pad, 3)
    names = fig["rows"]
    h = (grid.shape[0] - pad) // len(names) - pad
    k = (grid.shape[1] - pad) // (h + pad)  # square faces
    w = (grid.shape[1] - pad) // k - pad
    cell = lambda i, j: grid[pad + i * (h + pad):][:h, pad + j * (w + pad):][:, :w]  # noqa: E731 (row i, column j)
    return {name: np.stack([cell(i, j) for j in range(k)])
            for i, name in enumerate(names) if name not in ("observed", "clean")}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| corruption | method | n | MSE [-1,1] | PSNR (dB) | SSIM | images / s | Pajot et al. MSE |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ips = f"{r['n'] / r['seconds']:.3g}" if r.get("seconds") else ""
        lines.append(f"| {r['corruption']} | {r['method']} | {r['n']} | {r['mse_mean']:.4f} | {r['psnr_mean']:.2f} ± {r['psnr_ci95']:.2f} | "
                     f"{r['ssim_mean']:.3f}{old_ssim_mark(r)} | {ips} | {r.get('pajot_unsupervised_mse', '')} |")
    return "\n".join(lines) + "\n" + old_ssim_note(rows) + _training_note(rows)


def _training_note(rows: list[dict]) -> str:
    """What the uair rows' networks cost to train (from their cards), one line per corruption."""
    out = []
    for r in rows:
        rc = r.get("reconstructor") if r["method"].startswith("uair") else None
        if not rc or rc.get("train_seconds") is None:
            continue
        steps = f", {rc['steps']} steps of batch {rc['batch_size']}" if rc.get("steps") else ""
        out.append(f"- {r['corruption']} {r['method']}: {rc['epochs']} epoch(s){steps}, "
                   f"{rc['train_seconds'] / 60:.0f} min of training on {rc.get('hardware') or 'unrecorded hardware'}")
    return ("\nTrained reconstructors (images / s: one forward pass per batch of 256):\n\n" + "\n".join(out) + "\n"
            if out else "")

