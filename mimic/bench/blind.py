"""`mimic bench blind`: the six blind-recovery tasks, MimicGAN against PGD (and the oracle).

Held-out faces (the prior's test split by default) are written to ``OUT/clean``,
corrupted with exactly what ``mimic corrupt --seed SEED`` does into ``OUT/obs/<task>``,
and recovered by each method from those files. Methods: ``pgd``, ``mimic`` (the task's
preset), ``blind`` (MimicGAN with the task-agnostic preset), ``pgd_rK`` / ``mimic_rK``
(with K random restarts) and ``oracle``. Per task and method: mean PSNR and SSIM
(on [0, 1], data_range 1, per image then averaged) with 95% confidence intervals, and the
gain over PGD. The oracle (PGD through the known operator or with the known mask; not
blind) bounds what any method can reach with this prior.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .report_utils import (bench_setup, config_json, earlier_run, method_overrides, old_ssim_mark, old_ssim_note,
                           pyplot, save_figure)
from ..api import recover
from ..corruptions import get_corruption
from ..engine import solve
from ..io import labeled_grid, read_image, save_json, save_png, save_text, to_tensor, to_uint8
from ..metrics import SSIM_WINDOW, mean_ci95, psnr, ssim
from ..runner import corrupt_folder
from ..tasks import get_task

__all__ = ["bench_blind", "PAPER_TASKS", "markdown_table", "oracle_recover"]

PAPER_TASKS = ("gray_blur", "stylize", "negative", "stuck_pixels", "occlusion", "inpainting")


def _made_by(task, m, overrides, supervised_steps) -> dict:
    """The settings a method's saved recoveries depend on: a re-run resumes them only if these are unchanged (a
    preset changed between runs must not leave its old images in the new table)."""
    if m == "supervised":
        return {"method": m, "steps": supervised_steps, "mimic": __version__}
    base, ov = method_overrides(m, overrides, task)
    return {"method": m, "config": config_json(None if base == "blind" else task, ov), "mimic": __version__}


def oracle_recover(pr, task, y_u8, dev, batch_size, seed, overrides: dict | None = None) -> np.ndarray:
    """PGD through the true corruption of ``task`` (straight-through where it is not differentiable),
    or with L_obs masked to the pixels the corruption keeps (the task preset's settings with ``overrides``)."""
    t = get_task(task)
    return oracle_solve(pr, get_corruption(t.corruption), t.config.replace(**(overrides or {})), y_u8, dev,
                        batch_size, seed)


def oracle_solve(pr, corr, cfg, y_u8, dev, batch_size, seed, masks: torch.Tensor | None = None) -> np.ndarray:
    """PGD through the corruption module ``corr`` with ``cfg``: L_obs masked to the pixels it keeps where they are
    known (``masks``, (N, 1 or C_obs, H, W) in {0, 1}, or ``corr.known_mask``), else through ``corr`` itself (fresh
    draws of its randomness from ``seed``). ``y_u8`` (N, H, W, C_obs) uint8 -> (N, H, W, C) uint8, in groups of
    ``batch_size``."""
    corr = corr.to(dev)
    out_imgs = []
    for k in range(0, len(y_u8), batch_size):
        y = to_tensor(y_u8[k : k + batch_size]).to(dev)[None]  # (1, B, C_obs, H, W)
        mask = corr.known_mask(None, y[0]) if masks is None else masks[k : k + batch_size]
        if mask is not None:
            o = solve(pr.G, pr.D, y, cfg, method="pgd", weight=mask[None].to(dev))
        else:
            gen = torch.Generator().manual_seed(seed)
            o = solve(pr.G, pr.D, y, cfg, method="pgd", operator=lambda x: corr(x, generator=gen))
        out_imgs.append(to_uint8(o.x[0]))
    return np.concatenate(out_imgs)


def bench_blind(out, *, prior="celeba64", tasks=PAPER_TASKS, n: int = 200, device="auto", seed: int = 0, data=None,
                methods=("pgd", "mimic", "oracle"), batch_size: int = 25, quick: bool = False,
                supervised_steps: int = 1500,
                overrides: dict | None = None, log=print,
                trust_unverified: bool = False) -> dict:
    """Run the benchmark; writes ``OUT/blind.json`` and ``OUT/blind.md``; returns the JSON dict."""
    from .report_utils import heldout_test_faces

    out, dev, pr, overrides = bench_setup(out, prior, device, overrides, quick,
                                          trust_unverified=trust_unverified)
    pyplot()  # the figures need matplotlib (the bench extra): a missing one fails now, not after the run
    n = min(n, 8) if quick else n
    if data is not None:  # a folder of clean 64x64 faces instead of the prior's test split
        from ..priors.report import heldout_images

        clean_u8, source = heldout_images(pr, n, data=data)
    else:
        clean_u8, source = heldout_test_faces(pr, n)
    names = [f"{i:04d}" for i in range(len(clean_u8))]
    for nm, im in zip(names, clean_u8):
        if not (out / "clean" / f"{nm}.png").exists():
            save_png(out / "clean" / f"{nm}.png", im)
    rows, per_image, traces, supervised_info = [], {}, {}, {}
    # task -> (rows, per-image figures) of an earlier run with the same settings: kept in the output until this
    # run redoes the task (tasks it does not repeat are kept as they were; an interrupted resume loses nothing)
    earlier: dict = {}
    old_rows, old_configs = {}, {}
    old = earlier_run(out / "blind.json", {"n": len(clean_u8), "seed": seed, "overrides": overrides,
                                           "batch_size": batch_size}, prior_sha256=pr.sha256)
    if old is not None:  # resume: reuse every (task, method) an earlier run with the same settings measured
        old_rows = {(r["task"], r["method"]): r for r in old["results"]}
        earlier = {t: ([r for r in old["results"] if r["task"] == t], old.get("per_image", {}).get(t))
                   for t in dict.fromkeys(r["task"] for r in old["results"])}
        traces = old.get("traces", {})
        supervised_info = old.get("supervised", {})
        old_configs = old["settings"].get("configs", {})
    t_all = time.perf_counter()
    # the paper's task order, then any other task in the order first measured
    task_order = sorted(dict.fromkeys([*earlier, *tasks]),
                        key=lambda t: PAPER_TASKS.index(t) if t in PAPER_TASKS else len(PAPER_TASKS))

    def write():
        kept, later = [t for t in earlier if t not in tasks], [t for t in tasks if t in earlier]
        result = {
            "bench": "blind",
            "results": sorted([r for t in kept for r in earlier[t][0]] + rows + [r for t in later for r in earlier[t][0]],
                              key=lambda r: task_order.index(r["task"])),  # stable: methods keep their order
            "settings": {"prior": pr.name, "prior_sha256": pr.sha256, "faces": source, "n": len(clean_u8), "seed": seed,
                         "device": str(dev), "batch_size": batch_size, "overrides": overrides, "quick": quick,
                         "configs": {**{t: c for t, c in old_configs.items() if t in earlier or t in tasks},
                                     **{t: get_task(t).config.replace(**overrides).__dict__ for t in tasks}}},
            "versions": {"mimic": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "seconds": time.perf_counter() - t_all,
            "per_image": {**{t: earlier[t][1] for t in kept + later if earlier[t][1] is not None}, **per_image},
            "traces": traces,
            "supervised": supervised_info,
        }
        save_json(out / "blind.json", result)
        _trace_figures(out, traces)
        save_text(out / "blind.md", "Mean PSNR (dB) per task and method:\n\n" + summary_table(result["results"]) +
                  "\nEvery row with its 95% interval and SSIM:\n\n" + markdown_table(result["results"]))
        return result

    for task in tasks:
        corrupt_folder(out / "clean", out / "obs" / task, task=task, seed=seed)
        y_u8 = [read_image(out / "obs" / task / f"{nm}.png") for nm in names]
        y_arr = np.stack(y_u8)
        per_image[task] = {"observed": psnr(y_arr, clean_u8).tolist()}
        res, recs, mimicked = {}, {}, None
        for m in methods:
            t0 = time.perf_counter()
            rec_dir = out / "rec" / task / m
            made_by = _made_by(task, m, overrides, supervised_steps)  # what the saved recoveries must come from
            resumed = ((task, m) in old_rows and all((rec_dir / f"{nm}.png").exists() for nm in names)
                       and (rec_dir / "made_by.json").exists()
                       and json.loads((rec_dir / "made_by.json").read_text()) == made_by)
            if resumed:
                rec = np.stack([read_image(rec_dir / f"{nm}.png") for nm in names])
                log(f"{task:13s} {m:7s} resumed from {rec_dir}")
                if m == "mimic" and (rec_dir / "mimicked").exists():
                    mimicked = np.stack([read_image(rec_dir / "mimicked" / f"{nm}.png") for nm in names[:8]])
            elif m in ("oracle", "oracle_adapt"):
                rec = oracle_recover(pr, task, y_arr, dev, batch_size, seed,
                                     overrides=method_overrides(m, {})[1])
            elif m == "supervised":  # not blind: trained on (corrupted, clean) pairs of training faces
                from .supervised import apply_supervised, train_supervised

                net, info = train_supervised(task, pr, _train_faces(pr, 256 if quick else None), device=dev, seed=seed,
                                             steps=20 if quick else supervised_steps)
                rec = apply_supervised(net, y_arr, dev)
                supervised_info[task] = {k: v for k, v in info.items() if k != "history"}
            else:  # "pgd", "mimic", "blind", "pgd_rK" / "mimic_rK" with K random restarts, any with "_adapt"
                base, ov = method_overrides(m, overrides, task)
                trace = []
                r = recover(y_arr, task=task if base != "blind" else None, method="mimic" if base == "blind" else base,
                            prior=pr, batch_size=batch_size, device=dev, seed=seed,
                            callback=_tracer(trace, clean_u8[:batch_size]) if m in ("pgd", "mimic") else None, **ov)
                rec = r.images
                if trace:
                    traces.setdefault(task, {})[m] = trace
                if m == "mimic":
                    mimicked = np.stack(r.mimicked[:8])
                    for nm, im in zip(names[:8], mimicked):
                        save_png(rec_dir / "mimicked" / f"{nm}.png", im)
            secs = time.perf_counter() - t0
            if resumed:
                secs = old_rows[(task, m)]["seconds"]
            else:
                for nm, im in zip(names, rec):
                    save_png(rec_dir / f"{nm}.png", im)
                save_json(rec_dir / "made_by.json", made_by)
            p, s = psnr(rec, clean_u8), ssim(rec, clean_u8)
            res[m] = p
            recs[m] = (rec[:8], p[:8])
            pm, pci = mean_ci95(p)
            sm, sci = mean_ci95(s)
            row = {"task": task, "method": m, "n": len(p), "psnr_mean": pm, "psnr_ci95": pci, "ssim_mean": sm,
                   "ssim_ci95": sci, "ssim_window": SSIM_WINDOW, "seconds": secs,
                   "device": old_rows[(task, m)]["device"] if resumed else str(dev)}
            rows.append(row)
            per_image[task][m] = {"psnr": p.tolist(), "ssim": s.tolist()}
            log(f"{task:13s} {m:7s} PSNR {pm:6.2f} ± {pci:.2f}  SSIM {sm:.3f}  ({secs:.0f} s)")
        if task in earlier and earlier[task][1] is not None:
            # methods of this task that an earlier run with the same settings measured and this run does not
            # repeat keep their rows and per-image figures (gains and gap are recomputed against this run's PGD)
            old_task_rows, old_pi = earlier[task]
            order = [r["method"] for r in old_task_rows] + [m for m in methods if m not in
                                                             {r["method"] for r in old_task_rows}]
            for r in old_task_rows:
                if r["method"] not in methods and r["method"] in old_pi:
                    rows.append({k: v for k, v in r.items() if k not in ("gain_over_pgd_db", "gain_ci95",
                                                                          "oracle_gap_closed")})
                    per_image[task][r["method"]] = old_pi[r["method"]]
                    res[r["method"]] = np.asarray(old_pi[r["method"]]["psnr"])
            first = next(i for i, r in enumerate(rows) if r["task"] == task)  # this task's rows are the last ones
            rows[first:] = sorted(rows[first:], key=lambda r: order.index(r["method"]))
        if "pgd" in res:
            for row in rows:
                if row["task"] == task and row["method"] != "pgd":
                    d = res[row["method"]] - res["pgd"]
                    row["gain_over_pgd_db"], row["gain_ci95"] = mean_ci95(d)
            if "oracle" in res and "mimic" in res:
                gap = res["oracle"].mean() - res["pgd"].mean()
                for row in rows:
                    if row["task"] == task and row["method"] == "mimic":
                        row["oracle_gap_closed"] = float((res["mimic"].mean() - res["pgd"].mean()) / gap) if gap > 0 else None
        if "pgd" in recs and "mimic" in recs:
            _figure2(out / f"fig2_{task}.png", y_arr[:8], mimicked, recs, clean_u8[:8])
        earlier.pop(task, None)  # this run has now redone the task
        write()  # partial results after every task (an interrupted run keeps what it measured)
    return write()


_SUMMARY_ORDER = ("pgd", "pgd_r4", "blind", "mimic", "oracle", "pgd_adapt", "blind_adapt", "mimic_adapt",
                  "oracle_adapt", "supervised")


def summary_table(rows: list[dict]) -> str:
    """One row per task: mean PSNR of every method, MimicGAN's gain over PGD and the oracle gap it closes,
    and a last row averaging each column over the tasks that have it."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = [m for m in _SUMMARY_ORDER if any(r["method"] == m for r in rows)]
    methods += [m for m in dict.fromkeys(r["method"] for r in rows) if m not in methods]
    by = {(r["task"], r["method"]): r for r in rows}
    lines = ["| task | " + " | ".join(methods) + " | MimicGAN - PGD (dB) | oracle gap closed |",
             "| --- |" + " --- |" * (len(methods) + 2)]
    cols: dict[str, list] = {}
    for t in tasks:
        cells = []
        for m in methods:
            r = by.get((t, m))
            cells.append(f"{r['psnr_mean']:.2f}" if r else "")
            if r:
                cols.setdefault(m, []).append(r["psnr_mean"])
        mi = by.get((t, "mimic"), {})
        g = f"{mi['gain_over_pgd_db']:+.2f}" if "gain_over_pgd_db" in mi else ""
        c = f"{100 * mi['oracle_gap_closed']:.0f}%" if mi.get("oracle_gap_closed") is not None else ""
        if g:
            cols.setdefault("gain", []).append(mi["gain_over_pgd_db"])
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {g} | {c} |")
    if len(tasks) > 1:
        mean = lambda v: f"{sum(v) / len(v):.2f}" if v else ""  # noqa: E731
        gain = f"{sum(cols['gain']) / len(cols['gain']):+.2f}" if cols.get("gain") else ""
        lines.append(f"| mean of {len(tasks)} | " + " | ".join(mean(cols.get(m, [])) for m in methods) + f" | {gain} | |")
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| task | method | n | PSNR (dB) | SSIM | gain over PGD (dB) | oracle gap closed |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        g = f"{r['gain_over_pgd_db']:+.2f} ± {r['gain_ci95']:.2f}" if "gain_over_pgd_db" in r else ""
        c = f"{100 * r['oracle_gap_closed']:.0f}%" if r.get("oracle_gap_closed") is not None else ""
        lines.append(f"| {r['task']} | {r['method']} | {r['n']} | {r['psnr_mean']:.2f} ± {r['psnr_ci95']:.2f} | "
                     f"{r['ssim_mean']:.3f} ± {r['ssim_ci95']:.3f}{old_ssim_mark(r)} | {g} | {c} |")
    return "\n".join(lines) + "\n" + old_ssim_note(rows)


def _tracer(trace: list, clean_u8: np.ndarray):
    """A solve callback recording, for the first group of the first call, the PSNR of G(z) against the clean
    images and the group's L_obs after the warm start and each outer iteration (the paper's Figures 1b and 5)."""
    state = {"calls": 0}

    def cb(t, x, fx, hist):
        if t == 0:
            state["calls"] += 1
        if state["calls"] != 1:
            return
        k = min(len(clean_u8), x.shape[1])
        p = psnr(to_uint8(x[0, :k]), clean_u8[:k])
        trace.append({"t": t, "psnr": float(np.mean(p)), "obs": float(hist["obs"][-1][0])})

    return cb


def _figure2(path, obs, mimicked, recs, clean) -> None:
    """The paper's Figure 2 layout: observed, estimated corruption f(x), PGD, MimicGAN, clean; PSNR under each."""
    rows = [obs, mimicked, recs["pgd"][0], recs["mimic"][0], clean]
    labels = ["observed", "f(x) (mimic)", "PGD", "MimicGAN", "clean"]
    caps = [None, None, [f"{v:.1f} dB" for v in recs["pgd"][1]], [f"{v:.1f} dB" for v in recs["mimic"][1]], None]
    save_png(path, labeled_grid(rows, row_labels=labels, captions=caps))


def _trace_figures(out: Path, traces: dict) -> None:
    if not traces:
        return
    plt = pyplot()
    if plt is None:  # the figures are optional; the tables and JSON are not
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for i, (task, tr) in enumerate(traces.items()):
        col = f"C{i}"
        for m, ls in (("mimic", "-"), ("pgd", "--")):
            if m in tr:
                axes[0].plot([e["t"] for e in tr[m]], [e["psnr"] for e in tr[m]], ls, color=col,
                             label=f"{task} ({'MimicGAN' if m == 'mimic' else 'PGD'})")
        if "mimic" in tr:
            axes[1].plot([e["obs"] for e in tr["mimic"]], [e["psnr"] for e in tr["mimic"]], "o-", color=col, ms=3, label=task)
    axes[0].set_xlabel("outer iteration (0 = after the warm start)")
    axes[0].set_ylabel("PSNR of G(z) (dB), first group")
    axes[0].legend(fontsize=6, ncol=2)
    axes[0].set_title("PSNR vs outer iteration (paper Fig. 1b)")
    axes[1].set_xlabel("surrogate loss L_obs (group mean)")
    axes[1].set_ylabel("PSNR (dB)")
    axes[1].invert_xaxis()
    axes[1].legend(fontsize=6)
    axes[1].set_title("surrogate loss vs PSNR (paper Fig. 5)")
    fig.tight_layout()
    save_figure(fig, out / "fig_traces.png")


def _train_faces(pr, n: int | None = None) -> np.ndarray:
    """The prior's training faces (uint8 (N, 64, 64, 3)): the supervised reference trains on them."""
    from ..data import data_dir, list_images, load_image_folder, split_files

    root = data_dir("celeba")  # a missing folder: one line naming --data and MIMIC_DATA
    files = list_images(root)
    if not files:
        from ..inputs import InputError

        raise InputError(f"{root}: no CelebA training faces for the supervised reference")
    train = split_files(files, holdout=pr.card.get("split", {}).get("holdout", 1000)).train
    return load_image_folder(train[:n] if n else train, size=pr.resolution)
