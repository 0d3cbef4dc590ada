"""Folder jobs behind the CLI: recover, compare and corrupt whole folders.

Guarantees: never writes inside the input folder; every output file is written
atomically; a re-run resumes (images already in ``OUT/recovered`` are skipped
unless ``overwrite``); unreadable files are reported and skipped.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .api import Recovery, fill_notice, recover, resolve_device
from .corruptions import get_corruption
from .inputs import InputError, prepare, scan_folder
from .io import ImageReadError, make_grid, read_image, save_json, save_png, to_tensor, to_uint8
from .metrics import psnr, ssim
from .priors import load_prior
from .tasks import get_task

__all__ = ["recover_folder", "compare_folder", "corrupt_folder", "FolderResult", "check_out_dir"]


@dataclass
class FolderResult:
    out: Path
    done: int = 0  # recovered in this run
    resumed: int = 0  # already present, skipped
    skipped: list = field(default_factory=list)  # (file, reason)
    notices: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)


def check_out_dir(inp: Path, out: Path) -> None:
    """Refuse an output folder equal to or inside the input folder."""
    i, o = inp.resolve(), out.resolve()
    if o == i or i in o.parents:
        raise InputError(f"{out}: the output folder must not be the input folder or inside it")


def _rel_stem(p: Path, root: Path) -> str:
    return p.relative_to(root).with_suffix("").as_posix()


def _grid_rows(rows: list[list[np.ndarray]], n: int = 8) -> np.ndarray:
    tiles = []
    for row in rows:
        row = [np.repeat(a, 3, -1) if a.shape[-1] == 1 else a for a in row[:n]]
        tiles += row + [np.full_like(row[0], 255)] * (n - len(row))
    return make_grid(np.stack(tiles), ncol=n)


def _load_clean(clean_dir: Path | None, stems: list[str], resolution: int) -> dict:
    if clean_dir is None:
        return {}
    files = {}
    for p in scan_folder(clean_dir):
        files.setdefault(_rel_stem(p, clean_dir), p)
    out = {}
    for s in stems:
        if s in files:
            try:
                prep = prepare([read_image(files[s])], resolution=resolution, names=[str(files[s])])
                out[s] = prep.images[0]
            except (ImageReadError, InputError):
                pass
    return out


def recover_folder(inp, out, *, task=None, method: str = "mimic", prior=None, batch_size: int = 25,
                   device: str = "auto", seed: int = 0, clean=None, strict_size: bool = False,
                   overwrite: bool = False, progress: bool = True, groups_per_call: int | None = None,
                   log=print, subdir: str = "", **overrides) -> FolderResult:
    """Recover every image of ``inp`` into ``out`` (layout: recovered/, mimicked/, report.json, grid.png)."""
    inp, out = Path(inp), Path(out)
    files = scan_folder(inp)
    check_out_dir(inp, out)
    dev = resolve_device(device)
    t = get_task(task)
    pr = load_prior(prior if prior is not None else t.prior, device=dev)
    res = FolderResult(out=out)
    # duplicate stems (a.png and a.jpg) would overwrite each other's outputs
    seen, unique = {}, []
    for p in files:
        s = _rel_stem(p, inp)
        if s in seen:
            res.skipped.append((str(p), f"same name as {seen[s].name}; outputs would collide"))
            continue
        seen[s] = p
        unique.append(p)
    report_path = out / "report.json"
    old = json.loads(report_path.read_text()) if report_path.exists() and not overwrite else {}
    per_image = {r["stem"]: r for r in old.get("images", [])} if old else {}
    todo = []
    for p in unique:
        s = _rel_stem(p, inp)
        if not overwrite and (out / "recovered" / f"{s}.png").exists():
            res.resumed += 1
            continue
        todo.append(p)
    if res.resumed:
        res.notices.append(f"resuming: {res.resumed} image(s) already recovered in {out / 'recovered'} (use --overwrite to redo)")
    cfg = t.config.replace(**overrides) if overrides else t.config
    t_start = time.perf_counter()
    # read everything once (bad files reported and skipped)
    prep = prepare([str(p) for p in todo], resolution=pr.resolution, strict_size=strict_size,
                   names=[str(p) for p in todo])
    res.skipped += prep.skipped
    res.notices += prep.notices
    name_to_path = {str(p): p for p in todo}
    stems = [_rel_stem(name_to_path[nm], inp) for nm in prep.names]
    # process in chunks so that an interruption keeps every finished group
    gpc = groups_per_call or (64 if dev.type == "cuda" else 1)
    chunk = batch_size * gpc
    group_offset = 1 + max([r.get("group", -1) for r in per_image.values()], default=-1)
    restarted = []
    for k in range(0, len(prep.images), chunk):
        imgs = prep.images[k : k + chunk]
        rec = recover(imgs, task=t, method=method, prior=pr, batch_size=batch_size, device=dev, seed=seed + k,
                      groups_per_call=gpc, progress=progress, names=prep.names[k : k + chunk], **overrides)
        for j, nm in enumerate(rec.names):
            s = stems[k + j]
            save_png(out / "mimicked" / f"{s}.png", rec.mimicked[j])
            save_png(out / "recovered" / f"{s}.png", rec.images[j])  # last: its presence marks the image done
            per_image[s] = {"stem": s, "input": nm, "group": int(rec.group[j]) + group_offset,
                            "obs_loss": float(rec.obs_loss[j]), "fill": float(rec.fill[j])}
        group_offset += len(rec.surrogates)
        restarted += rec.restarted_groups
        res.done += len(rec.names)
        res.notices += [n for n in rec.notices if n not in res.notices and "diverged" in n]
    filled = [r["fill"] for r in per_image.values() if r.get("fill", 0) > 0]  # this run's and a resumed run's
    if filled:
        res.notices.append(fill_notice(len(filled), float(np.mean(filled))))
    # metrics against clean references
    all_stems = [s for s in (_rel_stem(p, inp) for p in unique) if s in per_image]
    clean_imgs = _load_clean(Path(clean) if clean else None, all_stems, pr.resolution)
    if clean:
        missing = [s for s in all_stems if s not in clean_imgs]
        if missing:
            res.notices.append(f"no clean reference for {len(missing)} image(s) in {clean}")
        for s in all_stems:
            if s in clean_imgs:
                from .io import read_image as _ri
                recd = _ri(out / "recovered" / f"{s}.png")
                per_image[s]["psnr"] = float(psnr(recd[None], clean_imgs[s][None])[0])
                per_image[s]["ssim"] = float(ssim(recd[None], clean_imgs[s][None])[0])
    rows = [per_image[s] for s in all_stems]
    if any("psnr" in r for r in rows):
        ps = [r["psnr"] for r in rows if "psnr" in r]
        ss = [r["ssim"] for r in rows if "ssim" in r]
        res.metrics = {"n": len(ps), "psnr_mean": float(np.mean(ps)), "ssim_mean": float(np.mean(ss))}
    res.report = {
        "version": __version__,
        "settings": {"task": t.name, "method": method, "prior": pr.name, "prior_path": pr.path,
                     "prior_sha256": pr.sha256, "schedule": cfg.__dict__, "batch_size": batch_size,
                     "seed": seed, "device": str(dev), "input": str(inp), "clean": str(clean) if clean else None},
        "timing": {"seconds_this_run": time.perf_counter() - t_start, "images_this_run": res.done,
                   "images_per_second": res.done / max(time.perf_counter() - t_start, 1e-9)},
        "metrics": res.metrics,
        "skipped": [{"input": a, "reason": b} for a, b in res.skipped],
        "images": rows,
    }
    save_json(report_path, res.report)
    # grid of the first images
    first = all_stems[:8]
    if first:
        obs = []
        for s in first:
            p = seen[s]
            try:
                obs.append(prepare([read_image(p)], resolution=pr.resolution).images[0])
            except (ImageReadError, InputError):
                obs.append(np.zeros((pr.resolution, pr.resolution, 3), np.uint8))
        rows_img = [obs, [read_image(out / "mimicked" / f"{s}.png") for s in first],
                    [read_image(out / "recovered" / f"{s}.png") for s in first]]
        if clean_imgs and all(s in clean_imgs for s in first):
            rows_img.append([clean_imgs[s] for s in first])
        save_png(out / "grid.png", _grid_rows(rows_img))
    return res


def compare_folder(inp, out, *, task=None, clean=None, progress=True, **kw) -> dict:
    """Run MimicGAN and PGD on the same observations: ``out/mimic``, ``out/pgd``, ``grid.png``, ``metrics.json``."""
    inp, out = Path(inp), Path(out)
    check_out_dir(inp, out)
    r_m = recover_folder(inp, out / "mimic", task=task, method="mimic", clean=clean, progress=progress, **kw)
    r_p = recover_folder(inp, out / "pgd", task=task, method="pgd", clean=clean, progress=progress, **kw)
    stems = [r["stem"] for r in r_m.report["images"]][:8]
    metrics = {"task": get_task(task).name, "mimic": r_m.metrics, "pgd": r_p.metrics}
    if r_m.metrics and r_p.metrics:
        metrics["gain_psnr_db"] = r_m.metrics["psnr_mean"] - r_p.metrics["psnr_mean"]
        metrics["gain_ssim"] = r_m.metrics["ssim_mean"] - r_p.metrics["ssim_mean"]
    pim = {r["stem"]: r for r in r_p.report["images"]}
    metrics["images"] = [{"stem": r["stem"], **{f"mimic_{k}": r[k] for k in ("psnr", "ssim", "obs_loss") if k in r},
                          **{f"pgd_{k}": pim[r["stem"]][k] for k in ("psnr", "ssim", "obs_loss") if k in pim.get(r["stem"], {})}}
                         for r in r_m.report["images"]]
    save_json(out / "metrics.json", metrics)
    if stems:
        res = load_prior(kw.get("prior") or get_task(task).prior).resolution
        src = {r["stem"]: r["input"] for r in r_m.report["images"]}
        obs = [prepare([read_image(src[s])], resolution=res).images[0] for s in stems]
        rows = [obs, [read_image(out / "mimic" / "mimicked" / f"{s}.png") for s in stems],
                [read_image(out / "mimic" / "recovered" / f"{s}.png") for s in stems],
                [read_image(out / "pgd" / "recovered" / f"{s}.png") for s in stems]]
        cl = _load_clean(Path(clean) if clean else None, stems, res)
        if cl and all(s in cl for s in stems):
            rows.append([cl[s] for s in stems])
        save_png(out / "grid.png", _grid_rows(rows))
    return {"mimic": r_m, "pgd": r_p, "metrics": metrics}


def corrupt_folder(inp, out, *, task: str, seed: int = 0, resolution: int | None = None, strict_size: bool = False,
                   overwrite: bool = False) -> FolderResult:
    """Apply a registered corruption (a task's, or a corruption name) to every image of ``inp``.

    Writes ``out/<stem>.png`` (the observation) and ``out/corruption.json``. The noise is
    drawn from one generator seeded by ``seed``, images in sorted order, 256 at a time (a
    batch-shared pattern, as in stuck_pixels, is shared by each block of 256).
    """
    from .corruptions import list_corruptions
    from .tasks import TASKS

    inp, out = Path(inp), Path(out)
    files = scan_folder(inp)
    check_out_dir(inp, out)
    name = TASKS[task].corruption if task in TASKS and TASKS[task].corruption else task
    corr = get_corruption(name)
    gray = corr.domain == "fmnist"  # Fashion-MNIST corruptions work on 28x28 gray images
    resolution = resolution or (28 if gray else 64)
    res = FolderResult(out=out)
    prep = prepare([str(p) for p in files], resolution=resolution, strict_size=strict_size,
                   names=[str(p) for p in files])
    res.skipped, res.notices = prep.skipped, prep.notices
    byname = {str(p): p for p in files}
    batch, stems = [], []
    for im, nm in zip(prep.images, prep.names):
        s = _rel_stem(byname[nm], inp)
        if not overwrite and (out / f"{s}.png").exists():
            res.resumed += 1
            continue
        if gray and im.shape[-1] == 3:
            im = np.round(im.astype(np.float32).mean(-1, keepdims=True)).astype(np.uint8)
        elif not gray and im.shape[-1] == 1:
            im = np.repeat(im, 3, -1)
        batch.append(im)
        stems.append(s)
    # one generator for the whole folder, as the paper's batch-shared noise patterns need
    gen = torch.Generator().manual_seed(seed)
    for k in range(0, len(batch), 256):
        x = to_tensor(np.stack(batch[k : k + 256]))
        y = to_uint8(corr(x, generator=gen))
        for j, s in enumerate(stems[k : k + 256]):
            save_png(out / f"{s}.png", y[j])
            res.done += 1
    save_json(out / "corruption.json", {"corruption": corr.name, "params": corr.params(), "seed": seed,
                                        "source": str(inp), "version": __version__})
    return res
