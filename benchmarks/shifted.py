"""The task presets on corruption settings they were not tuned on (validation faces).

Every preset was chosen on one setting of its corruption (the paper's). A user's corruption will not be
exactly that one: this script corrupts validation faces with other settings of each task's corruption (a
milder and a harsher or different one) and recovers them with PGD, the task's preset and the task-agnostic
blind preset, to show whether the gain over PGD holds off the tuned setting.

    python benchmarks/shifted.py --n 50 --offset 450 --out benchmarks/results/shifted

A re-run with ``--tasks``/``--methods``/``--which`` replaces the rows it measures and keeps the others.

Writes ``OUT/shifted.json`` (per-image PSNR, settings, timing) and ``OUT/shifted.md``; prints the table.
Validation faces (the split's ``val``), never the test faces. Deterministic on a CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tune import parse_variant, val_faces  # noqa: E402

from mimic.api import recover  # noqa: E402
from mimic.corruptions import get_corruption  # noqa: E402
from mimic.io import save_json, save_text, to_tensor, to_uint8  # noqa: E402
from mimic.metrics import mean_ci95, psnr  # noqa: E402
from mimic.tasks import get_task  # noqa: E402

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


def label(task: str, kw: dict) -> str:
    return task + ("" if not kw else " " + ",".join(f"{k}={v}" for k, v in kw.items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prior", default="celeba64")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--offset", type=int, default=450)
    ap.add_argument("--tasks", default=None, help="comma-separated subset of the tasks")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--which", choices=("all", "shifted", "tuned"), default="all",
                    help="the settings to run: all, only the shifted ones, or only the tuned ones (the reference)")
    ap.add_argument("--blind-variant", default="", help="MimicConfig overrides for the blind preset, like tune.py's "
                    "--variant (e.g. 'robust=1.5'); for trying a change, not for the committed results")
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks = set(args.tasks.split(",")) if args.tasks else None
    methods = args.methods.split(",")
    if set(methods) - set(METHODS):
        ap.error(f"unknown method(s) {sorted(set(methods) - set(METHODS))}; valid: {', '.join(METHODS)}")
    blind_kw = parse_variant(args.blind_variant)
    if blind_kw and args.out:
        ap.error("--blind-variant is for trying a change; the results in --out are the presets' own")
    clean_u8 = val_faces(args.n, args.offset)
    clean = to_tensor(clean_u8)
    out = Path(args.out) if args.out else None
    prev = json.loads((out / "shifted.json").read_text()) if out and (out / "shifted.json").exists() else None
    # rows of an earlier run on the same faces are kept (and replaced where this run measures them again)
    rows = prev["results"] if prev and prev["meta"]["faces"] == faces_label(args) else []
    for task, kw in SETTINGS:
        if (tasks and task not in tasks) or (args.which == "shifted" and not kw) or (args.which == "tuned" and kw):
            continue
        corr = get_corruption(get_task(task).corruption, **kw)
        y_u8 = to_uint8(corr(clean, generator=torch.Generator().manual_seed(0)))
        per = {"observed": psnr(y_u8, clean_u8)}
        secs = {}
        for m in methods:
            t0 = time.time()
            # pgd and mimic: the task's preset; blind: the task-agnostic preset (no task named)
            r = recover(y_u8, task=None if m == "blind" else task, method="pgd" if m == "pgd" else "mimic",
                        prior=args.prior, device=args.device, **(blind_kw if m == "blind" else {}))
            per[m], secs[m] = psnr(r.images, clean_u8), time.time() - t0
        lab = label(task, kw)
        rows = [r for r in rows if r["setting"] != lab or r["method"] not in per]
        # the gains are paired with PGD's per-image PSNR: this run's, or a kept row's (a re-run of some methods)
        pgd = per.get("pgd")
        if pgd is None:
            pgd = next((np.asarray(r["psnr"]) for r in rows if r["setting"] == lab and r["method"] == "pgd"), None)
        for m, p in per.items():
            pm, pci = mean_ci95(p)
            row = {"task": task, "setting": lab, "corruption": corr.params(), "method": m, "n": len(p),
                   "psnr_mean": pm, "psnr_ci95": pci, "psnr": [float(v) for v in p], "seconds": secs.get(m, 0.0)}
            if m != "pgd" and m != "observed" and pgd is not None:
                row["gain_over_pgd_db"], row["gain_ci95"] = mean_ci95(p - pgd)
            rows.append(row)
        print(f"{lab:45s} " + "  ".join(f"{m} {float(np.mean(p)):6.2f}" for m, p in per.items()), flush=True)
        if out:
            write(out, rows, args)
    print(table(rows))


def table(rows: list[dict]) -> str:
    by = {}
    for r in rows:
        by.setdefault(r["setting"], {})[r["method"]] = r
    lines = ["| setting | observed | PGD | MimicGAN (task preset) | gain | blind preset | gain |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def cell(d, m):
        return f"{d[m]['psnr_mean']:.2f}" if m in d else ""

    def gain(d, m):
        return f"{d[m]['gain_over_pgd_db']:+.2f} ± {d[m]['gain_ci95']:.2f}" if m in d and "gain_over_pgd_db" in d[m] else ""

    order = [label(t, kw) for t, kw in SETTINGS]
    for s, d in sorted(by.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        lines.append(f"| {s} | {cell(d, 'observed')} | {cell(d, 'pgd')} | {cell(d, 'mimic')} | {gain(d, 'mimic')} | "
                     f"{cell(d, 'blind')} | {gain(d, 'blind')} |")
    return "\n".join(lines)


def faces_label(args) -> str:
    return f"validation split, {args.n} faces from offset {args.offset}"


def write(out: Path, rows: list[dict], args) -> None:
    meta = {"faces": faces_label(args), "prior": args.prior, "device": args.device, "torch": torch.__version__}
    save_json(out / "shifted.json", {"meta": meta, "results": rows})  # atomic, like every bench's results
    save_text(out / "shifted.md", table(rows) + "\n")


if __name__ == "__main__":
    main()
