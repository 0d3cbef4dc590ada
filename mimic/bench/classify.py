"""`mimic bench classify`: robust classification on Fashion-MNIST (the MimicGAN paper's Figure 3).

500 random Fashion-MNIST test images (fixed seed) are corrupted by each of the paper's three
extreme corruptions (binarize, drop_pixels, blur_negative). The shipped classifier, trained on
clean images only, classifies the clean images, the observations, their PGD recovery and their
MimicGAN recovery (Fashion-MNIST surrogate, groups of 25). Rows: corruption, method, n,
accuracy (percent, with a 95% Wilson interval).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from .report_utils import pyplot, save_figure
from ..api import recover, resolve_device
from ..corruptions import get_corruption
from ..data import default_data_root, load_fmnist
from ..io import save_json, save_png, save_text, to_tensor, to_uint8
from ..priors import load_classifier, load_prior
from ..tasks import get_task

__all__ = ["bench_classify", "FMNIST_TASKS", "fmnist_test_subset", "accuracy_ci95", "PAPER_FIG3"]

FMNIST_TASKS = ("binarize", "drop_pixels", "blur_negative")
#: The paper's Figure 3 (accuracy %, observed / PGD / MimicGAN); clean 91.5.
PAPER_FIG3 = {"binarize": (37.0, 25.5, 50.4), "drop_pixels": (25.5, 15.6, 46.4), "blur_negative": (7.2, 8.4, 45.8)}


def fmnist_test_subset(n: int, seed: int = 0, data=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random official test images: (uint8 (n, 28, 28, 1), labels (n,), indices (n,)), sorted indices."""
    root = Path(data) if data is not None else default_data_root() / "fashion-mnist"
    x, y = load_fmnist(root, "test")
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False))
    return x[idx], y[idx], idx


def accuracy_ci95(correct: np.ndarray) -> tuple[float, float]:
    """Accuracy in percent and the half-width of its 95% Wilson interval (percent)."""
    n = len(correct)
    p = float(np.mean(correct)) if n else float("nan")
    z = 1.96
    den = 1 + z * z / n
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return 100 * p, 100 * float(half)


@torch.no_grad()
def predict(clf, x: torch.Tensor, device, batch_size: int = 500) -> np.ndarray:
    """Class predictions for x (N, 1, 28, 28) in [-1, 1]."""
    out = []
    for k in range(0, len(x), batch_size):
        out.append(clf(x[k : k + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out).numpy()


def bench_classify(out, *, prior="fmnist28", classifier="fmnist_classifier", corruptions=FMNIST_TASKS,
                   n: int = 500, device="auto", seed: int = 0, data=None, methods=("pgd", "mimic"),
                   batch_size: int = 25, quick: bool = False, overrides: dict | None = None, log=print) -> dict:
    """Run the benchmark; writes ``OUT/classify.json``, ``OUT/classify.md`` and figures; returns the JSON dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    pr = load_prior(prior, device=dev)
    clf = load_classifier(classifier, device=dev).eval()
    overrides = dict(overrides or {})
    if quick:
        n = min(n, 25)
        overrides = {"warm_steps": 20, "T": 2, "T1": 5, "T2": 5, "restarts": 1, **overrides}
    clean_u8, labels, idx = fmnist_test_subset(n, seed, data)
    clean = to_tensor(clean_u8)  # (n, 1, 28, 28) in [-1, 1]
    t_all = time.perf_counter()
    rows, per_image, samples = [], {"labels": labels.tolist(), "indices": idx.tolist()}, {}

    def add(corr, method, pred, secs=0.0):
        correct = pred == labels
        acc, ci = accuracy_ci95(correct)
        rows.append({"corruption": corr, "method": method, "n": len(labels), "accuracy": acc, "accuracy_ci95": ci,
                     "seconds": secs})
        per_image.setdefault(corr, {})[method] = pred.tolist()
        log(f"{corr:14s} {method:9s} accuracy {acc:5.1f}% ± {ci:.1f}  ({secs:.0f} s)")

    def write():
        result = {
            "bench": "classify",
            "results": rows,
            "paper_fig3": {k: dict(zip(("observed", "pgd", "mimic"), v)) for k, v in PAPER_FIG3.items()},
            "settings": {"prior": pr.name, "prior_sha256": pr.sha256, "classifier": str(classifier), "n": len(labels),
                         "seed": seed, "device": str(dev), "batch_size": batch_size, "overrides": overrides,
                         "quick": quick, "test_indices": "numpy default_rng(seed).choice(10000, n), sorted",
                         "configs": {c: get_task(c).config.replace(**overrides).__dict__ for c in corruptions}},
            "versions": {"mimic": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "seconds": time.perf_counter() - t_all,
            "per_image": per_image,
        }
        save_json(out / "classify.json", result)
        save_text(out / "classify.md", markdown_table(rows))
        _figures(out, rows, samples, corruptions, methods)
        return result

    add("none", "clean", predict(clf, clean, dev))
    for corr in corruptions:
        t = get_task(corr)
        y = get_corruption(t.corruption)(clean, generator=torch.Generator().manual_seed(seed))  # (n, 1, 28, 28)
        add(corr, "observed", predict(clf, y, dev))
        samples[corr] = {"observed": y[:10], "clean": clean[:10]}
        for m in methods:
            t0 = time.perf_counter()
            base, _, rk = m.partition("_r")
            ov = {**overrides, **({"restarts": int(rk)} if rk else {})}
            r = recover(y, task=corr, method=base, prior=pr, batch_size=batch_size, device=dev, seed=seed, **ov)
            add(corr, m, predict(clf, r.tensor, dev), time.perf_counter() - t0)
            samples[corr][m] = r.tensor[:10]
        write()  # partial results after every corruption
    return write()


def markdown_table(rows: list[dict]) -> str:
    paper_col = {"observed": 0, "pgd": 1, "mimic": 2}
    lines = ["| corruption | method | n | accuracy (%) | paper (%) |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        p = PAPER_FIG3.get(r["corruption"])
        ref = f"{p[paper_col[r['method']]]:.1f}" if p and r["method"] in paper_col else ("91.5" if r["method"] == "clean" else "")
        lines.append(f"| {r['corruption']} | {r['method']} | {r['n']} | {r['accuracy']:.1f} ± {r['accuracy_ci95']:.1f} | {ref} |")
    return "\n".join(lines) + "\n"


def _figures(out: Path, rows, samples, corruptions, methods) -> None:
    from ..io import make_grid

    # sample grid per corruption: rows clean / observed / each method
    for corr, d in samples.items():
        order = ["clean", "observed", *methods]
        tiles = np.concatenate([to_uint8(d[k]) for k in order if k in d])
        save_png(out / f"classify_{corr}.png", make_grid(tiles, ncol=len(d["clean"])))
    plt = pyplot()
    if plt is None:  # the figures are optional; the tables and JSON are not
        return
    cats = [c for c in corruptions]
    ms = ["observed", *methods]
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
