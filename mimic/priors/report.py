"""Quality figures of a prior and its model card.

``prior_report`` measures, on held-out images:
- representation error: PGD projection (identity corruption) PSNR / SSIM, the ceiling
  of every recovery with this prior, and a projection grid;
- discriminator sanity: mean D logit on real vs generated images and their ROC AUC;
- a 64-sample grid;
- for Fashion-MNIST priors with a classifier: its accuracy on the projections.
It returns them; only with ``card_dir`` does it write a model card (``card.json``, ``README.md``, ``samples.png``,
``projection.png``) there, never into the package's own ``pretrained/`` folder (a shipped card is replaced by
``python -m tools.ship_prior --card DIR``, which checks that the card was measured on the shipped weights).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..engine import MimicConfig, solve
from ..io import make_grid, save_json, save_png, to_tensor, to_uint8
from ..metrics import mean_ci95, psnr, ssim
from . import PriorError, load_prior, sha256_file

__all__ = ["prior_report", "report_classifier", "heldout_images", "roc_auc", "write_card_markdown", "PROJECTION_CONFIG",
           "checkpoint_val_projection", "CARD_FILES", "check_card_dir", "write_card"]

#: what a model card folder holds (``write_card``; ``tools/ship_prior.py --card`` installs these)
CARD_FILES = ("card.json", "README.md", "samples.png", "projection.png")

# the projection uses the engine's PGD with its default latent budget
PROJECTION_CONFIG = MimicConfig()
#: Fashion-MNIST's fully connected generator has many poor local optima from z0, and the recovery's 400-step
#: budget does not converge: on the first 200 test images the classifier keeps 80.5% of the projections'
#: classes with 4 restarts of 400 steps (20.50 dB), 85.0% with 4 x 800 (21.07 dB) and 87.0% with 4 x 1600
#: (21.60 dB; 8 x 400: 20.72 dB). The report measures the prior, so it projects with 4 x 1600.
PROJECTION_CONFIGS = {"dcgan64": PROJECTION_CONFIG, "fmnist28": MimicConfig(restarts=4, warm_steps=800, T2=80)}


def report_classifier(prior, device="cpu"):
    """The shipped classifier that measures a prior's class retention (28x28 gray priors), or None."""
    from . import list_priors, load_classifier

    if (prior.resolution, prior.channels) == (28, 1) and "fmnist_classifier" in list_priors():
        return load_classifier("fmnist_classifier", device=device)
    return None


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve of scores ``pos`` (label 1) vs ``neg`` (label 0), ties counted half."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty_like(order, dtype=np.float64)
    sv = allv[order]
    i = 0
    while i < len(sv):  # average ranks of ties
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    rp = ranks[: len(pos)].sum()
    return float((rp - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def heldout_images(prior, n: int, data=None, which: str = "test") -> tuple[np.ndarray, str]:
    """Held-out clean images (uint8 (n, R, R, C)) and a description of where they come from.

    Raises :class:`mimic.data.DataNotFoundError` (one line naming ``--data`` and ``MIMIC_DATA``) when the data is
    missing or holds no images."""
    from ..data import DataNotFoundError, data_dir, fmnist_dir, list_images, load_fmnist, load_image_folder, split_files

    if prior.channels == 1:  # Fashion-MNIST: the official test set
        root = fmnist_dir(data)
        x, _ = load_fmnist(root, "test")
        return x[:n], f"first {n} images of the Fashion-MNIST test set (t10k)"
    if data:
        files = list_images(data_dir("celeba", data))[:n]
        if not files:
            raise DataNotFoundError(f"{data}: no images (--data)")
        return load_image_folder(files, size=prior.resolution, crop_fraction=1.0), f"{len(files)} images of {data}"
    root = data_dir("celeba")
    files = list_images(root)
    holdout = prior.card.get("split", {}).get("holdout", 1000)
    if len(files) <= holdout:
        raise DataNotFoundError(f"{root}: {len(files)} images, not the {holdout} held out by the prior's split and "
                                "more; give --data DIR, or set MIMIC_DATA to the folder that holds celeba/")
    files = getattr(split_files(files, holdout=holdout), which)[:n]
    return load_image_folder(files, size=prior.resolution), \
        f"first {len(files)} images of the held-out {which} split ({files[0].name}..{files[-1].name})"


def prior_report(name_or_path, *, data=None, n: int = 200, device="cpu", batch_size: int = 25,
                 groups_per_call: int = 2, card_dir=None, progress: bool = True,
                 classifier=None, cfg: MimicConfig | None = None, split: str = "test",
                 trust_unverified: bool = False, images: tuple | None = None) -> dict:
    """Measure a prior's quality figures (see module docstring); returns them as a dict.

    ``split`` ("test" or "val") picks the held-out half of a CelebA-style prior's split when no
    ``data`` is given (choices about the report are made on "val"; the card reports "test").
    Fashion-MNIST priors always use the official test set. ``images``: (uint8 array (N, R, R, C), a description
    of where they come from) to measure on in place of the held-out images (the first ``n``; a bench that holds
    its own split out). With ``card_dir`` a model card with these figures is written there (:func:`write_card`;
    refused up front for the package's own ``pretrained/``).
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    if card_dir is not None:
        check_card_dir(card_dir)
    t0 = time.perf_counter()
    pr = load_prior(name_or_path, device=device, trust_unverified=trust_unverified)
    if cfg is None:
        arch = json.loads((Path(pr.path) / "config.json").read_text()).get("arch")
        cfg = PROJECTION_CONFIGS.get(arch, PROJECTION_CONFIG)
    clean_u8, source = (images[0][:n], images[1]) if images is not None else heldout_images(pr, n, data, which=split)
    n = len(clean_u8)
    if n == 0:
        raise ValueError(f"no held-out images to project (n={n}, {source})")
    clean = to_tensor(clean_u8)
    R, C = pr.resolution, pr.channels
    proj = torch.empty_like(clean)
    gen = torch.Generator().manual_seed(0)
    per_call = batch_size * groups_per_call
    for k in range(0, n, per_call):
        chunk = clean[k : k + per_call]
        S = (len(chunk) + batch_size - 1) // batch_size
        y = torch.zeros(S, batch_size, C, R, R)
        valid = torch.zeros(S, batch_size)
        y.view(-1, C, R, R)[: len(chunk)] = chunk
        valid.view(-1)[: len(chunk)] = 1
        out = solve(pr.G, pr.D, y.to(device), cfg, method="pgd", valid=valid.to(device), generator=gen)
        proj[k : k + len(chunk)] = out.x.reshape(-1, C, R, R)[: len(chunk)].cpu()
        if progress:
            print(f"projected {min(k + per_call, n)}/{n}", file=sys.stderr, flush=True)
    proj_u8 = to_uint8(proj)
    p = psnr(proj_u8, clean_u8)
    s = ssim(proj_u8, clean_u8)
    with torch.no_grad():
        z = torch.rand(n, pr.nz, generator=torch.Generator().manual_seed(1)) * 2 - 1
        fake = pr.G(z.to(device))
        d_real = torch.cat([pr.D(clean[i : i + 100].to(device)) for i in range(0, n, 100)]).cpu().numpy()
        d_fake = torch.cat([pr.D(fake[i : i + 100]) for i in range(0, n, 100)]).cpu().numpy()
        samples = to_uint8(pr.G((torch.rand(64, pr.nz, generator=torch.Generator().manual_seed(1234)) * 2 - 1).to(device)))
    pm, pci = mean_ci95(p)
    sm, sci = mean_ci95(s)
    q = {
        "n_images": int(n),
        "heldout_source": source,
        "projection_psnr_mean": pm,
        "projection_psnr_ci95": pci,
        "projection_ssim_mean": sm,
        "projection_ssim_ci95": sci,
        "projection_latent_steps": cfg.latent_steps(),
        "projection_restarts": cfg.restarts,
        "d_logit_real_mean": float(d_real.mean()),
        "d_logit_fake_mean": float(d_fake.mean()),
        "d_auc": roc_auc(d_real, d_fake),
        "seconds": time.perf_counter() - t0,
    }
    if classifier is not None:
        from .train import evaluate_classifier
        from ..data import fmnist_dir, load_fmnist

        _, labels = load_fmnist(fmnist_dir(data), "test")
        Y = torch.from_numpy(labels[:n])
        q["classifier_accuracy_clean"] = evaluate_classifier(classifier, clean, Y, device=device)
        q["classifier_accuracy_projection"] = evaluate_classifier(classifier, proj, Y, device=device)
    if card_dir is not None:
        k = min(16, n)
        write_card(card_dir, pr, q, samples=samples, projection=np.concatenate([clean_u8[:k], proj_u8[:k]]), ncol=k)
    return q


def _package_pretrained_dirs() -> list[Path]:
    """The package's own prior folders: ``mimic/pretrained`` (an installed wheel) and, in a source checkout, the
    repository's tracked ``pretrained/``."""
    here = Path(__file__).resolve().parent.parent  # mimic/
    dirs = [here / "pretrained"]
    if (here.parent / "pyproject.toml").exists():
        dirs.append(here.parent / "pretrained")
    return dirs


def check_card_dir(card_dir) -> Path:
    """``card_dir`` resolved, or :class:`PriorError` when it is the package's own ``pretrained/`` folder or inside it
    (the shipped model cards describe the shipped weights measured on their held-out split; a report on other data
    must not overwrite them)."""
    d = Path(card_dir).resolve()
    for p in _package_pretrained_dirs():
        p = p.resolve()
        if d == p or d.is_relative_to(p):
            raise PriorError(f"{card_dir}: refusing to write a model card into the package's shipped priors ({p}); "
                             "write it elsewhere (ship it with python -m tools.ship_prior --card DIR)")
    return d


def write_card(card_dir, prior, quality: dict, *, samples: np.ndarray, projection: np.ndarray, ncol: int) -> Path:
    """Write a model card for ``prior`` into ``card_dir`` (created): its card data (``prior.card``) with ``quality``
    and the sha256 of its weight files as ``card.json``, the rendered ``README.md``, a 64-sample grid and the
    projection grid (``projection``: originals then projections, ``ncol`` each). Refused by :func:`check_card_dir`."""
    d = check_card_dir(card_dir)
    d.mkdir(parents=True, exist_ok=True)
    save_png(d / "samples.png", make_grid(samples, ncol=8))
    save_png(d / "projection.png", make_grid(projection, ncol=ncol))
    card = dict(prior.card)
    card["quality"] = quality
    card["sha256"] = {f: sha256_file(Path(prior.path) / f) for f in ("generator.safetensors", "discriminator.safetensors")}
    save_json(d / "card.json", card)
    write_card_markdown(d)
    return d


def checkpoint_val_projection(ckpt, *, use_ema: bool = True, n: int = 25) -> dict:
    """Export a training checkpoint as shipping would (``export_prior``) into a temporary folder and project (PGD,
    the engine's default budget) the first ``n`` faces of the held-out *validation* half, in groups of 25: what
    chooses the epoch and the weights to ship. Returns ``{"epoch", "psnr_mean", "ssim_mean"}``."""
    import shutil
    import tempfile

    from .train import export_prior

    if n % 25:
        raise ValueError(f"n must be a multiple of 25, got {n}")
    tmp = Path(tempfile.mkdtemp())
    try:
        conf = export_prior(ckpt, tmp, use_ema=use_ema)  # with the card's sha256 of the weights
        pr = load_prior(tmp)
        cu, _ = heldout_images(pr, n, which="val")
        y = to_tensor(cu)  # (n, C, H, W)
        y = y.reshape(n // 25, 25, *y.shape[1:])  # (S, B, C, H, W)
        out = solve(pr.G, pr.D, y, MimicConfig(), method="pgd", generator=torch.Generator().manual_seed(0))
    finally:
        shutil.rmtree(tmp)
    x = to_uint8(out.x.reshape(-1, *out.x.shape[2:]))  # (n, C, H, W)
    return {"epoch": conf["epochs"], "psnr_mean": float(psnr(x, cu).mean()), "ssim_mean": float(ssim(x, cu).mean())}


def write_card_markdown(folder: str | Path) -> None:
    """Render ``card.json`` as the human-readable model card ``README.md``."""
    folder = Path(folder)
    c = json.loads((folder / "card.json").read_text())
    q = c.get("quality", {})
    lines = [f"# {c.get('name', folder.name)}", "", c.get("summary", ""), ""]
    for key, title in (("architecture", "Architecture"), ("data", "Data"), ("terms", "Terms"),
                       ("preprocessing", "Preprocessing"), ("split", "Held-out split"), ("training", "Training")):
        if key in c:
            v = c[key]
            lines += [f"## {title}", "", v if isinstance(v, str) else "```json\n" + json.dumps(v, indent=2) + "\n```", ""]
    if q:
        lines += ["## Quality (measured by `mimic prior-report`)", "", "| figure | value |", "| --- | --- |"]
        for k, v in q.items():
            lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
        lines.append("")
        if (folder / "samples.png").exists():
            lines += ["![samples](samples.png)", ""]
        if (folder / "projection.png").exists():
            lines += ["Projection (top: held-out originals, bottom: PGD projection):", "", "![projection](projection.png)", ""]
    lines += ["## Files (sha256)", ""] + [f"- `{k}`: `{v}`" for k, v in c.get("sha256", {}).items()] + [""]
    (folder / "README.md").write_text("\n".join(lines))
