"""`mimic bench shifted`: the task presets on corruption settings they were not tuned on (validation faces).

Every preset was chosen on one setting of its corruption (the paper's). A user's corruption will not be exactly
that one: this bench corrupts validation faces with other settings of each task's corruption (a milder and a
harsher or different one) and recovers them with PGD, the task's preset and the task-agnostic blind preset, to
show whether the gain over PGD holds off the tuned setting. Methods: ``pgd`` and ``mimic`` (the task's preset),
``blind`` (MimicGAN with the task-agnostic preset). Per setting and method: mean PSNR (on [0, 1]) with its 95%
interval, and the gain over PGD paired per image.

Writes ``OUT/shifted.json`` (per-image PSNR, settings, timing) and ``OUT/shifted.md``. Validation faces (the
split's ``val``, 50 from offset 450 by default: faces no tuning sweep used), never the test faces. Deterministic
on a CPU. A re-run into the same folder with ``tasks`` / ``methods`` / ``which`` replaces the rows it measures
and keeps the others.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .. import __version__
from ..api import recover
from ..corruptions import get_corruption
from ..io import save_json, save_text, to_tensor, to_uint8
from ..metrics import mean_ci95, psnr
from ..tasks import get_task
from .report_utils import bench_setup, config_json, earlier_run, method_overrides, validation_faces

__all__ = ["bench_shifted", "markdown_table", "SETTINGS", "METHODS", "setting_label"]

# (task, corruption settings): the tuned setting first, then two others per task
SETTINGS = [
    ("gray_blur", {}), ("gray_blur", {"ksize": 9}), ("gray_blur", {"ksize": 21, "threshold": 100}),
    ("stylize", {}), ("stylize", {"sigma_s": 30.0, "sigma_r": 0.5}), ("stylize", {"top": 0.2, "noise_std": 0.3}),
    ("negative", {}), ("negative", {"ksize": 5}), ("negative", {"ksize": 17}),
    ("stuck_pixels", {}), ("stuck_pixels", {"col": 14, "noise_std": 0.1}), ("stuck_pixels", {"col": 36, "noise_std": 0.4}),
    ("occlusion", {}), ("occlusion", {"long": 30, "short": 14}), ("occlusion", {"long": 50, "short": 24, "noise_std": 0.3}),
    ("inpainting", {}), ("inpainting", {"noise_std": 1.0}), ("inpainting", {"noise_std": 0.5, "cols": (4, 60)}),
]
METHODS = ("pgd", "mimic", "blind")
WHICH = ("all", "shifted", "tuned")


def setting_label(task: str, kw: dict) -> str:
    """``"gray_blur ksize=21,threshold=100"``: a row's setting (the task alone for its tuned setting)."""
    return task + ("" if not kw else " " + ",".join(f"{k}={v}" for k, v in kw.items()))


def bench_shifted(out, *, prior="celeba64", tasks=None, methods=METHODS, which: str = "all", n: int = 50,
                  offset: int = 450, device="auto", seed: int = 0, data=None, quick: bool = False,
                  overrides: dict | None = None, log=print,
                  trust_unverified: bool = False) -> dict:
    """Run the benchmark; writes ``OUT/shifted.json`` and ``OUT/shifted.md`` after every setting; returns the JSON.

    ``tasks``: a subset of the six paper tasks (default: all); ``which``: ``"all"`` settings, only the
    ``"shifted"`` ones or only the ``"tuned"`` ones (the reference); ``data``: a folder of clean 64x64 faces
    instead of the validation split; ``quick``: at most 4 faces and a short schedule (a smoke run);
    ``overrides``: MimicConfig fields for every method.
    """
    methods = tuple(methods)
    if set(methods) - set(METHODS):
        raise ValueError(f"unknown method(s) {sorted(set(methods) - set(METHODS))}; valid: {', '.join(METHODS)}")
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    known = {t for t, _ in SETTINGS}
    if tasks is not None and set(tasks) - known:
        raise ValueError(f"unknown task(s) {sorted(set(tasks) - known)}; valid: {', '.join(dict.fromkeys(known))}")
    out, dev, pr, overrides = bench_setup(out, prior, device, overrides, quick,
                                          trust_unverified=trust_unverified)
    n = min(n, 4) if quick else n
    clean_u8, source = validation_faces(n, offset, data=data, size=pr.resolution)
    clean = to_tensor(clean_u8)
    meta = {"faces": source, "prior": pr.name, "prior_sha256": pr.sha256, "device": str(dev), "seed": seed,
            "overrides": overrides, "quick": quick, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "mimic": __version__}
    # rows of an earlier run on the same faces with the same settings are kept (and replaced where this run
    # measures them again); settings it did not record were at their defaults
    old = earlier_run(out / "shifted.json", {k: meta[k] for k in ("faces", "prior", "prior_sha256", "seed",
                                                                  "overrides", "quick")},
                      key="meta", missing={"prior_sha256": pr.sha256, "seed": 0, "overrides": {}, "quick": False})
    rows = old["results"] if old else []
    result = {"meta": meta, "results": rows}
    for task, kw in SETTINGS:
        if (tasks and task not in tasks) or (which == "shifted" and not kw) or (which == "tuned" and kw):
            continue
        corr = get_corruption(get_task(task).corruption, **kw)
        y_u8 = to_uint8(corr(clean, generator=torch.Generator().manual_seed(seed)))
        per, secs, cfgs = {"observed": psnr(y_u8, clean_u8)}, {}, {}
        for m in methods:
            t0 = time.perf_counter()
            # pgd and mimic: the task's preset; blind: the task-agnostic preset (no task named)
            _, ov = method_overrides(m, overrides, task)
            r = recover(y_u8, task=None if m == "blind" else task, method="pgd" if m == "pgd" else "mimic",
                        prior=pr, device=dev, seed=seed, **ov)
            per[m], secs[m] = psnr(r.images, clean_u8), time.perf_counter() - t0
            cfgs[m] = config_json(None if m == "blind" else task, ov)
        lab = setting_label(task, kw)
        rows[:] = [r for r in rows if r["setting"] != lab or r["method"] not in per]
        for m, p in per.items():
            pm, pci = mean_ci95(p)
            rows.append({"task": task, "setting": lab, "corruption": corr.params(), "method": m, "n": len(p),
                         "psnr_mean": pm, "psnr_ci95": pci, "psnr": [float(v) for v in p],
                         "seconds": secs.get(m, 0.0), "device": str(dev),
                         **({"config": cfgs[m]} if m in cfgs else {})})
        # the gains are paired with PGD's per-image PSNR, this run's or a kept row's, also for the kept rows
        same = [r for r in rows if r["setting"] == lab]
        pgd = next((np.asarray(r["psnr"]) for r in same if r["method"] == "pgd"), None)
        for r in same:
            if r["method"] not in ("pgd", "observed") and pgd is not None:
                r["gain_over_pgd_db"], r["gain_ci95"] = mean_ci95(np.asarray(r["psnr"]) - pgd)
        log(f"{lab:45s} " + "  ".join(f"{m} {float(np.mean(p)):6.2f}" for m, p in per.items()))
        save_json(out / "shifted.json", result)  # after every setting: an interrupted run keeps its rows
        save_text(out / "shifted.md", markdown_table(rows) + "\n")
    return result


def markdown_table(rows: list[dict]) -> str:
    """One line per setting (in ``SETTINGS`` order): the observation, PGD, both presets and their gains over PGD."""
    by: dict = {}
    for r in rows:
        by.setdefault(r["setting"], {})[r["method"]] = r
    lines = ["| setting | observed | PGD | MimicGAN (task preset) | gain | blind preset | gain |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def cell(d, m):
        return f"{d[m]['psnr_mean']:.2f}" if m in d else ""

    def gain(d, m):
        return f"{d[m]['gain_over_pgd_db']:+.2f} ± {d[m]['gain_ci95']:.2f}" if m in d and "gain_over_pgd_db" in d[m] else ""

    order = [setting_label(t, kw) for t, kw in SETTINGS]
    for s, d in sorted(by.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        lines.append(f"| {s} | {cell(d, 'observed')} | {cell(d, 'pgd')} | {cell(d, 'mimic')} | {gain(d, 'mimic')} | "
                     f"{cell(d, 'blind')} | {gain(d, 'blind')} |")
    return "\n".join(lines)
