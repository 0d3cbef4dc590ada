"""`mimic bench classify`: robust classification on Fashion-MNIST (the MimicGAN paper's Figure 3).

500 random Fashion-MNIST test images (fixed seed) are corrupted by each of the paper's three
extreme corruptions (binarize, drop_pixels, blur_negative). The shipped classifier, trained on
clean images only, classifies the clean images, the observations, their PGD recovery and their
MimicGAN recovery (Fashion-MNIST surrogate, groups of 25). Rows: corruption, method, n,
accuracy (percent, with its 95% Wilson interval [lo, hi]).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .report_utils import (bench_setup, config_json, earlier_run, load_samples, method_overrides, pyplot,
                           save_figure, save_samples)
from ..api import recover
from ..corruptions import get_corruption
from ..data import fmnist_dir, load_fmnist
from ..io import save_json, save_png, save_text, to_tensor, to_uint8
from ..metrics import format_ci, proportion_ci95
from ..priors import load_classifier
from ..tasks import get_task

__all__ = ["bench_classify", "FMNIST_TASKS", "fmnist_test_subset", "accuracy_ci95", "accuracy_text", "PAPER_FIG3"]

FMNIST_TASKS = ("binarize", "drop_pixels", "blur_negative")
#: The paper's Figure 3 (accuracy %, observed / PGD / MimicGAN); clean 91.5.
PAPER_FIG3 = {"binarize": (37.0, 25.5, 50.4), "drop_pixels": (25.5, 15.6, 46.4), "blur_negative": (7.2, 8.4, 45.8)}


def fmnist_test_subset(n: int, seed: int = 0, data=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random official test images: (uint8 (n, 28, 28, 1), labels (n,), indices (n,)), sorted indices."""
    x, y = load_fmnist(fmnist_dir(data), "test")  # a missing folder: one line naming --data and MIMIC_DATA
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False))
    return x[idx], y[idx], idx


def accuracy_ci95(correct: np.ndarray) -> tuple[float, list[float]]:
    """Accuracy in percent and its 95% Wilson interval [lo, hi] in percent (asymmetric; 0 of 500 is [0.0, 0.8])."""
    p, lo, hi = proportion_ci95(np.asarray(correct, dtype=bool))
    return 100 * p, [100 * lo, 100 * hi]


def accuracy_text(acc: float, ci) -> str:
    """``"90.0 [82.6, 94.5]"``; a row of an earlier run that stored a half-width prints ``"90.0 ± 5.9"``."""
    return format_ci(acc, ci, 1)


@torch.no_grad()
def predict(clf, x: torch.Tensor, device, batch_size: int = 500) -> np.ndarray:
    """Class predictions for x (N, 1, 28, 28) in [-1, 1]."""
    out = []
    for k in range(0, len(x), batch_size):
        out.append(clf(x[k : k + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out).numpy()


def bench_classify(out, *, prior="fmnist28", classifier="fmnist_classifier", corruptions=FMNIST_TASKS,
                   n: int = 500, device="auto", seed: int = 0, data=None, methods=("pgd", "mimic"),
                   batch_size: int = 25, quick: bool = False, overrides: dict | None = None, log=print,
                   trust_unverified: bool = False) -> dict:
    """Run the benchmark; writes ``OUT/classify.json``, ``OUT/classify.md`` and figures; returns the JSON dict."""
    out, dev, pr, overrides = bench_setup(out, prior, device, overrides, quick, restarts=1,
                                          trust_unverified=trust_unverified)
    pyplot()  # the figures need matplotlib (the bench extra): a missing one fails now, not after the run
    out.mkdir(parents=True, exist_ok=True)
    clf = load_classifier(classifier, device=dev, trust_unverified=trust_unverified).eval()
    n = min(n, 25) if quick else n
    clean_u8, labels, idx = fmnist_test_subset(n, seed, data)
    clean = to_tensor(clean_u8)  # (n, 1, 28, 28) in [-1, 1]
    t_all = time.perf_counter()
    rows, per_image, samples = [], {"labels": labels.tolist(), "indices": idx.tolist()}, {}
    same = {"prior_sha256": pr.sha256, "classifier": str(classifier), "n": len(labels), "seed": seed,
            "batch_size": batch_size, "overrides": overrides, "quick": quick}
    # rows of an earlier run with the same settings that this run does not redo are kept (a re-run of one
    # corruption or one method leaves the rest of the table as it was)
    old_rows, old_per_image, old_samples = _earlier(out, same)
    redone = {(c, m) for c in corruptions for m in methods}
    for (c, m), r in old_rows.items():
        if "config" in r and (c, m) not in redone and r["config"] != _config(c, m, overrides):
            log(f"note: the kept row {c}/{m} was measured with a different config than the {c} preset now has; "
                f"re-run it (--corruptions {c} --methods {m})")

    def add(corr, method, pred, secs=0.0, config=None):
        correct = pred == labels
        acc, ci = accuracy_ci95(correct)
        row = {"corruption": corr, "method": method, "n": len(labels), "accuracy": acc, "accuracy_ci95": ci,
               "seconds": secs, "device": str(dev)}
        if config is not None:
            row["config"] = config
        rows.append(row)
        per_image.setdefault(corr, {})[method] = pred.tolist()
        log(f"{corr:14s} {method:9s} accuracy {accuracy_text(acc, ci)} %  ({secs:.0f} s)")

    def write():
        new = {(r["corruption"], r["method"]) for r in rows}
        merged = rows + [r for k, r in old_rows.items() if k not in new]
        merged.sort(key=lambda r: (_order(r["corruption"], FMNIST_TASKS), _method_order(r["method"])))
        pi = {c: dict(v) for c, v in old_per_image.items() if c not in ("labels", "indices")}
        for c, v in per_image.items():
            if c in ("labels", "indices"):
                pi[c] = v
            else:
                pi.setdefault(c, {}).update(v)
        # recovered sample images, kept across runs; the clean test images are not stored (they come from the data)
        smp = {**old_samples, **{f"{c}/{m}": to_uint8(t) for c, d in samples.items() for m, t in d.items()}}
        corrs = sorted({r["corruption"] for r in merged} - {"none"}, key=lambda c: _order(c, FMNIST_TASKS))
        result = {
            "bench": "classify",
            "results": merged,
            "paper_fig3": {k: dict(zip(("observed", "pgd", "mimic"), v)) for k, v in PAPER_FIG3.items()},
            "settings": {"prior": pr.name, "prior_sha256": pr.sha256, "classifier": str(classifier), "n": len(labels),
                         "seed": seed, "device": str(dev), "batch_size": batch_size, "overrides": overrides,
                         "quick": quick, "test_indices": "numpy default_rng(seed).choice(10000, n), sorted",
                         "configs": {c: get_task(c).config.replace(**overrides).__dict__ for c in corrs}},
            "versions": {"mimic": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "seconds": time.perf_counter() - t_all,
            "per_image": pi,
        }
        save_samples(out / "classify_samples.npz", {k: v for k, v in smp.items() if not k.endswith("/clean")})
        save_json(out / "classify.json", result)
        save_text(out / "classify.md", markdown_table(merged))
        _figures(out, merged, {**smp, **{f"{c}/clean": to_uint8(clean[:10]) for c in corrs}}, corrs)
        return result

    add("none", "clean", predict(clf, clean, dev))
    for corr in corruptions:
        t = get_task(corr)
        y = get_corruption(t.corruption)(clean, generator=torch.Generator().manual_seed(seed))  # (n, 1, 28, 28)
        add(corr, "observed", predict(clf, y, dev))
        samples[corr] = {"observed": y[:10], "clean": clean[:10]}
        for m in methods:
            t0 = time.perf_counter()
            base, ov = method_overrides(m, overrides, corr)
            r = recover(y, task=corr, method=base, prior=pr, batch_size=batch_size, device=dev, seed=seed, **ov)
            add(corr, m, predict(clf, r.tensor, dev), time.perf_counter() - t0, config=_config(corr, m, overrides))
            samples[corr][m] = r.tensor[:10]
        write()  # partial results after every corruption
    return write()


def _config(corr: str, method: str, overrides: dict) -> dict:
    """The recovery settings of one (corruption, method) row, as JSON values (tuples become lists)."""
    base, ov = method_overrides(method, overrides, corr)
    return {"method": base, **config_json(corr, ov)}


def _order(corr: str, known) -> int:
    return -1 if corr == "none" else (list(known).index(corr) if corr in known else len(known))


def _method_order(m: str) -> tuple:
    fixed = {"clean": 0, "observed": 1, "pgd": 2, "mimic": 4}
    return (fixed.get(m, 3), m)  # pgd_rK between pgd and mimic


def _earlier(out: Path, same: dict) -> tuple[dict, dict, dict]:
    """Rows, per-image predictions and sample images of an earlier run in ``out`` with the same settings."""
    old = earlier_run(out / "classify.json", same)
    if old is None:
        return {}, {}, {}
    try:
        smp = load_samples(out / "classify_samples.npz")
        return {(r["corruption"], r["method"]): r for r in old["results"]}, old.get("per_image", {}), smp
    except (KeyError, ValueError, OSError):
        return {}, {}, {}


def markdown_table(rows: list[dict]) -> str:
    paper_col = {"observed": 0, "pgd": 1, "mimic": 2}
    lines = ["| corruption | method | n | accuracy (%) [95% CI] | paper (%) |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        p = PAPER_FIG3.get(r["corruption"])
        ref = f"{p[paper_col[r['method']]]:.1f}" if p and r["method"] in paper_col else ("91.5" if r["method"] == "clean" else "")
        lines.append(f"| {r['corruption']} | {r['method']} | {r['n']} | {accuracy_text(r['accuracy'], r['accuracy_ci95'])} | {ref} |")
    return "\n".join(lines) + "\n"


def _figures(out: Path, rows, samples: dict, corruptions) -> None:
    from ..io import make_grid

    # sample grid per corruption: rows clean / observed / each method (uint8 samples keyed "corruption/method")
    for corr in corruptions:
        have = sorted((k.split("/", 1)[1] for k in samples if k.startswith(corr + "/")),
                      key=lambda m: (m != "clean", _method_order(m)))
        if "clean" in have:
            tiles = np.concatenate([samples[f"{corr}/{m}"] for m in have])
            save_png(out / f"classify_{corr}.png", make_grid(tiles, ncol=len(samples[f"{corr}/clean"])))
    plt = pyplot()
    if plt is None:  # the figures are optional; the tables and JSON are not
        return
    cats = list(corruptions)
    ms = sorted({r["method"] for r in rows} - {"clean"}, key=_method_order)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    w = 0.8 / len(ms)
    acc = {(r["corruption"], r["method"]): r["accuracy"] for r in rows}
    for i, m in enumerate(ms):
        ax.bar(np.arange(len(cats)) + (i - (len(ms) - 1) / 2) * w, [acc.get((c, m), np.nan) for c in cats], w, label=m)
    clean = acc.get(("none", "clean"))
    if clean is not None:
        ax.axhline(clean, color="k", ls="--", lw=1, label=f"clean {clean:.1f}%")
    ax.set_xticks(np.arange(len(cats)), cats)
    ax.set_ylabel("classifier accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Fashion-MNIST: accuracy after test-time recovery")
    fig.tight_layout()
    save_figure(fig, out / "classify.png")
