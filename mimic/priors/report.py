"""Quality figures of a prior and its model card.

``prior_report`` measures, on held-out images:
- representation error: PGD projection (identity corruption) PSNR / SSIM, the ceiling
  of every recovery with this prior, and a projection grid;
- discriminator sanity: mean D logit on real vs generated images and their ROC AUC;
- a 64-sample grid;
- for Fashion-MNIST priors with a classifier: its accuracy on the projections.
and writes them into ``card.json`` / ``README.md`` of the prior folder.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..engine import MimicConfig, solve
from ..io import make_grid, save_json, save_png, to_tensor, to_uint8
from ..metrics import mean_ci95, psnr, ssim
from . import load_prior, sha256_file

__all__ = ["prior_report", "report_classifier", "heldout_images", "roc_auc", "write_card_markdown", "PROJECTION_CONFIG"]

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
    """Held-out clean images (uint8 (n, R, R, C)) and a description of where they come from."""
    from ..data import default_data_root, list_images, load_fmnist, load_image_folder, split_files

    if prior.channels == 1:  # Fashion-MNIST: the official test set
        root = Path(data) if data else default_data_root() / "fashion-mnist"
        x, _ = load_fmnist(root, "test")
        return x[:n], f"first {n} images of the Fashion-MNIST test set ({root})"
    if data:
        files = list_images(data)[:n]
        return load_image_folder(files, size=prior.resolution, crop_fraction=1.0), f"{len(files)} images of {data}"
    root = default_data_root() / "celeba"
    split = split_files(list_images(root), holdout=prior.card.get("split", {}).get("holdout", 1000))
    files = getattr(split, which)[:n]
    return load_image_folder(files, size=prior.resolution), \
        f"first {len(files)} images of the held-out {which} split ({files[0].name}..{files[-1].name})"


def prior_report(name_or_path, *, data=None, n: int = 200, device="cpu", batch_size: int = 25,
                 groups_per_call: int = 2, write_card: bool = True, progress: bool = True,
                 classifier=None, cfg: MimicConfig | None = None, split: str = "test") -> dict:
    """Measure a prior's quality figures (see module docstring); returns them as a dict.

    ``split`` ("test" or "val") picks the held-out half of a CelebA-style prior's split when no
    ``data`` is given (choices about the report are made on "val"; the card reports "test").
    Fashion-MNIST priors always use the official test set.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    t0 = time.perf_counter()
    pr = load_prior(name_or_path, device=device)
    if cfg is None:
        arch = json.loads((Path(pr.path) / "config.json").read_text()).get("arch")
        cfg = PROJECTION_CONFIGS.get(arch, PROJECTION_CONFIG)
    clean_u8, source = heldout_images(pr, n, data, which=split)
    n = len(clean_u8)
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
            print(f"projected {min(k + per_call, n)}/{n}", flush=True)
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
        from ..data import load_fmnist

        root = Path(data) if data else None
        _, labels = load_fmnist(root or __import__("mimic.data", fromlist=["x"]).default_data_root() / "fashion-mnist", "test")
        Y = torch.from_numpy(labels[:n])
        q["classifier_accuracy_clean"] = evaluate_classifier(classifier, clean, Y, device=device)
        q["classifier_accuracy_projection"] = evaluate_classifier(classifier, proj, Y, device=device)
    if write_card:
        folder = Path(pr.path)
        save_png(folder / "samples.png", make_grid(samples, ncol=8))
        k = min(16, n)
        save_png(folder / "projection.png", make_grid(np.concatenate([clean_u8[:k], proj_u8[:k]]), ncol=k))
        card_path = folder / "card.json"
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        card["quality"] = q
        card["sha256"] = {f: sha256_file(folder / f) for f in ("generator.safetensors", "discriminator.safetensors")}
        save_json(card_path, card)
        write_card_markdown(folder)
    return q


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
