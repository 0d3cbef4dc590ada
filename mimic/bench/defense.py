"""`mimic bench defense`: MimicGAN as a test-time defense on Fashion-MNIST (the paper's Figure 4).

Attacks on the shipped classifier come from adversarial-robustness-toolbox (``pip install
"mimicgan[attacks]"``): FGSM, PGD (Madry), BIM, DeepFool and Carlini-Wagner L2. Each defense cleans
the adversarial images in batches of 100 before the classifier sees them:

- ``none``: the adversarial images as they are;
- ``defense_gan``: PGD onto the prior with random restarts (Defense-GAN);
- ``cowboy``: Defense-GAN plus the discriminator term (lam_adv = 1e-3);
- ``mimic``: MimicGAN (the ``adversarial`` preset: Fashion-MNIST surrogate, one per batch of 100).

Also the universal perturbation of the paper's Figure 4a (the mean FGSM perturbation of 15
other test images, scaled by alpha and added to every image) and an attack that targets the
cleaner itself: BPDA (Athalye et al.), iterated FGSM steps whose gradient is taken at the
cleaned image and passed straight through the cleaner (identity backward).

All attack budgets are stated on the [0, 1] pixel scale (the images are on [-1, 1] inside, so
every epsilon is doubled there).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from .report_utils import bench_setup, earlier_run, load_samples, pyplot, save_figure, save_samples
from ..api import recover
from ..inputs import InputError
from ..io import save_json, save_png, save_text, to_tensor, to_uint8
from ..priors import load_classifier
from .classify import accuracy_ci95, accuracy_text, fmnist_test_subset, predict

__all__ = ["bench_defense", "ATTACKS", "DEFENSES", "PAPER_FIG4", "clean_images", "art_classifier", "run_attack"]

#: Attack parameters on the [0, 1] pixel scale.
ATTACKS = {
    "fgsm": {"eps": 0.3},
    "pgd": {"eps": 0.3, "eps_step": 0.01, "max_iter": 40, "num_random_init": 1},
    "bim": {"eps": 0.3, "eps_step": 0.01, "max_iter": 40},
    "deepfool": {"max_iter": 50, "epsilon": 0.02, "nb_grads": 10},
    "cw": {"confidence": 0.0, "learning_rate": 0.01, "binary_search_steps": 5, "max_iter": 50, "initial_const": 0.1},
}
DEFENSES = ("none", "defense_gan", "cowboy", "mimic")
#: The paper's Figure 4 (accuracy %: no defense / Cowboy / Defense-GAN / MimicGAN).
PAPER_FIG4 = {"deepfool": (6.2, 80.2, 80.0, 85.4), "cw": (0.4, 67.0, 66.2, 69.2), "bim": (5.6, 60.0, 58.4, 68.0),
              "pgd": (5.4, 60.8, 58.8, 66.4), "fgsm": (11.6, 48.2, 46.6, 60.0)}


def art_classifier(clf, device):
    try:
        from art.estimators.classification import PyTorchClassifier
    except ImportError as e:  # pragma: no cover - depends on the optional extra
        raise InputError('bench defense needs adversarial-robustness-toolbox: pip install "mimicgan[attacks]"') from e
    return PyTorchClassifier(model=clf, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                             clip_values=(-1.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu")


def run_attack(name: str, est, x: np.ndarray, y: np.ndarray, params: dict) -> np.ndarray:
    """x (N, 1, 28, 28) float32 on [-1, 1] -> adversarial x on [-1, 1]; eps-like budgets doubled for the scale."""
    from art.attacks.evasion import (BasicIterativeMethod, CarliniL2Method, DeepFool, FastGradientMethod,
                                     ProjectedGradientDescent)

    p = dict(params)
    for k in ("eps", "eps_step"):
        if k in p:
            p[k] = 2 * p[k]
    if name == "fgsm":
        a = FastGradientMethod(est, batch_size=100, **p)
    elif name == "pgd":
        a = ProjectedGradientDescent(est, batch_size=100, verbose=False, **p)
    elif name == "bim":
        a = BasicIterativeMethod(est, batch_size=100, verbose=False, **p)
    elif name == "deepfool":
        a = DeepFool(est, batch_size=100, verbose=False, **p)
    elif name == "cw":
        a = CarliniL2Method(est, batch_size=100, verbose=False, **p)
    else:
        raise InputError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    kw = {} if name in ("deepfool",) else {"y": np.eye(10, dtype=np.float32)[y]}
    return a.generate(x=x, **kw).astype(np.float32)


def clean_images(x: torch.Tensor, defense: str, *, prior, device, seed: int = 0, restarts: int = 4,
                 batch_size: int = 100, overrides: dict | None = None) -> torch.Tensor:
    """Apply a defense to x (N, 1, 28, 28) in [-1, 1]; returns the cleaned images (N, 1, 28, 28) in [-1, 1]."""
    ov = dict(overrides or {})
    if defense == "none":
        return x
    if defense == "defense_gan":
        r = recover(x, task="adversarial", method="pgd", prior=prior, batch_size=batch_size, device=device,
                    seed=seed, **{"restarts": restarts, "lam_adv": 0.0, **ov})
    elif defense == "cowboy":
        r = recover(x, task="adversarial", method="pgd", prior=prior, batch_size=batch_size, device=device,
                    seed=seed, **{"restarts": restarts, "lam_adv": 1e-3, **ov})
    elif defense == "mimic":
        r = recover(x, task="adversarial", method="mimic", prior=prior, batch_size=batch_size, device=device,
                    seed=seed, **ov)
    else:
        raise InputError(f"unknown defense {defense!r}; valid: {', '.join(DEFENSES)}")
    return r.tensor


def bench_defense(out, *, prior="fmnist28", classifier="fmnist_classifier", attacks=tuple(ATTACKS),
                  defenses=DEFENSES, n: int = 500, device="auto", seed: int = 0, data=None, restarts: int = 4,
                  alphas=(0.5, 1.0, 1.5, 2.0), n_universal: int | None = None, adaptive=("defense_gan", "mimic"),
                  n_adaptive: int = 100, adaptive_steps: int = 5, quick: bool = False,
                  overrides: dict | None = None, log=print, trust_unverified: bool = False) -> dict:
    """Run the benchmark; writes ``OUT/defense.json``, ``OUT/defense.md`` and plots; returns the JSON dict."""
    out, dev, pr, overrides = bench_setup(out, prior, device, overrides, quick, restarts=1,
                                          trust_unverified=trust_unverified)
    pyplot()  # the figures need matplotlib (the bench extra): a missing one fails now, not after the run
    out.mkdir(parents=True, exist_ok=True)
    clf = load_classifier(classifier, device=dev, trust_unverified=trust_unverified).eval()
    est = art_classifier(clf, dev)
    if quick:
        n, n_adaptive, adaptive_steps, restarts = min(n, 20), min(n_adaptive, 10), min(adaptive_steps, 2), min(restarts, 2)
        alphas = tuple(alphas[:2])
    n_universal = n if n_universal is None else n_universal
    # the 500 evaluated images, and 15 further test images for the universal perturbation
    clean_u8, labels, idx = fmnist_test_subset(n + 15, seed, data)
    rest_u8, rest_y = clean_u8[n:], labels[n:]
    clean_u8, labels, idx = clean_u8[:n], labels[:n], idx[:n]
    x = to_tensor(clean_u8)  # (n, 1, 28, 28) in [-1, 1]
    kw = {"prior": pr, "device": dev, "seed": seed, "restarts": restarts, "overrides": overrides}
    settings = {"prior": pr.name, "prior_sha256": pr.sha256, "classifier": str(classifier), "n": n,
                "seed": seed, "device": str(dev), "attacks": {a: ATTACKS[a] for a in attacks},
                "attack_scale": "budgets on [0, 1] pixels", "restarts": restarts, "clean_batch": 100,
                "universal": {"source_images": 15, "alphas": list(alphas), "n": n_universal},
                "bpda": {"n": n_adaptive, "steps": adaptive_steps, "eps": 0.3}, "overrides": overrides,
                "quick": quick}
    # an earlier run in ``out`` with the same settings: its rows that this run does not repeat are kept
    old_rows, old_per_image, old_samples = _earlier(out, settings)
    settings["attacks"] = {**{a: ATTACKS[a] for a, _ in old_rows if a in ATTACKS}, **settings["attacks"]}
    rows, per_image, adv_store = [], {"labels": labels.tolist(), "indices": idx.tolist()}, {}
    t_all = time.perf_counter()

    def add(attack, method, pred, lab, secs):
        acc, ci = accuracy_ci95(pred == lab)
        rows.append({"attack": attack, "method": method, "n": len(lab), "accuracy": acc, "accuracy_ci95": ci,
                     "seconds": secs, "device": str(dev)})
        per_image.setdefault(attack, {})[method] = pred.tolist()
        log(f"{attack:16s} {method:12s} accuracy {accuracy_text(acc, ci)} %  ({secs:.0f} s)")

    def merged() -> tuple[list, list, dict]:
        """The earlier run's rows this run has not (yet) repeated; all rows in the bench's order; per-image
        predictions of both."""
        done = {(r["attack"], r["method"]) for r in rows}
        kept = [r for k, r in old_rows.items() if k not in done]
        pi = {a: dict(v) if isinstance(v, dict) else v for a, v in per_image.items()}
        for r in kept:
            if r["method"] in old_per_image.get(r["attack"], {}):
                pi.setdefault(r["attack"], {})[r["method"]] = old_per_image[r["attack"]][r["method"]]
        return kept, sorted(rows + kept, key=_row_order), pi

    def save():  # after every attack and at the end: an interrupted run keeps what it measured
        kept, all_rows, pi = merged()
        result = {
            "bench": "defense",
            "results": all_rows,
            "paper_fig4": {k: dict(zip(("none", "cowboy", "defense_gan", "mimic"), v)) for k, v in PAPER_FIG4.items()},
            "settings": settings,
            "versions": {"mimic": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "seconds": time.perf_counter() - t_all + sum(r["seconds"] for r in kept),
            "per_image": pi,
        }
        save_json(out / "defense.json", result)
        save_text(out / "defense.md", markdown_table(all_rows))
        return result

    for d in defenses:  # the cost of each defense on clean images
        t0 = time.perf_counter()
        add("none", d, predict(clf, clean_images(x, d, **kw), dev), labels, time.perf_counter() - t0)
    for a in attacks:
        t0 = time.perf_counter()
        xa = torch.from_numpy(run_attack(a, est, x.numpy(), labels, ATTACKS[a]))
        t_att = time.perf_counter() - t0
        linf = float((xa - x).abs().flatten(1).max(1).values.mean()) / 2
        l2 = float((xa - x).flatten(1).norm(dim=1).mean()) / 2
        log(f"{a}: mean L_inf {linf:.3f}, mean L2 {l2:.3f} on [0, 1] ({t_att:.0f} s)")
        adv_store[a] = {"adv": to_uint8(xa[:8])}
        for d in defenses:
            t0 = time.perf_counter()
            xc = clean_images(xa, d, **kw)
            add(a, d, predict(clf, xc, dev), labels, time.perf_counter() - t0)
            rows[-1].update({"linf": linf, "l2": l2})
            adv_store[a][d] = to_uint8(xc[:8])
        save()
    # universal perturbation: the mean FGSM perturbation of 15 other test images
    xr = to_tensor(rest_u8)
    delta = (torch.from_numpy(run_attack("fgsm", est, xr.numpy(), rest_y, ATTACKS["fgsm"])) - xr).mean(0, keepdim=True)
    xu, yu = x[:n_universal], labels[:n_universal]
    for al in alphas:
        xa = (xu + al * delta).clamp(-1, 1)
        for d in ("none", "defense_gan", "mimic"):
            if d not in defenses:
                continue
            t0 = time.perf_counter()
            add(f"universal@{al:g}", d, predict(clf, clean_images(xa, d, **kw), dev), yu, time.perf_counter() - t0)
    # BPDA: attack the whole pipeline classifier(cleaner(x)) with the cleaner's backward as identity
    xb, yb = x[:n_adaptive], torch.from_numpy(labels[:n_adaptive])
    eps, step = 2 * 0.3, 2 * 0.3 / max(adaptive_steps, 1) * 1.5
    for d in adaptive:
        t0 = time.perf_counter()
        xa = xb.clone()
        for _ in range(adaptive_steps):
            xc = clean_images(xa, d, **kw).to(dev).requires_grad_(True)
            loss = F.cross_entropy(clf(xc), yb.to(dev))
            (g,) = torch.autograd.grad(loss, [xc])
            xa = (xb + (xa + step * g.sign().cpu() - xb).clamp(-eps, eps)).clamp(-1, 1)
        add("bpda", d, predict(clf, clean_images(xa, d, **kw), dev), labels[:n_adaptive], time.perf_counter() - t0)
        rows[-1]["params"] = {"eps": 0.3, "step": step / 2, "steps": adaptive_steps}
    result = save()
    for a, st in adv_store.items():  # the kept defenses' samples beside this run's, in the bench's order
        st.update({d: old_samples[f"{a}/{d}"] for d in DEFENSES if d not in st and f"{a}/{d}" in old_samples})
        adv_store[a] = {k: st[k] for k in ("adv", *DEFENSES) if k in st}
    keep = {k: v for k, v in old_samples.items() if k.split("/", 1)[0] not in adv_store}  # attacks not re-run
    save_samples(out / "defense_samples.npz",
                 {**keep, **{f"{a}/{k}": v for a, st in adv_store.items() for k, v in st.items()}})
    _figures(out, result["results"], adv_store, to_uint8(x[:8]), alphas)
    return result


def _row_order(r: dict) -> tuple:
    """none, the attacks in ATTACKS order, the universal perturbation by alpha, BPDA; defenses in DEFENSES order."""
    a, m = r["attack"], r["method"]
    if a == "none":
        ra = (0, 0.0)
    elif a in ATTACKS:
        ra = (1, float(list(ATTACKS).index(a)))
    elif a.startswith("universal@"):
        ra = (2, float(a.split("@", 1)[1]))
    else:
        ra = (3 if a == "bpda" else 4, 0.0)
    return (*ra, DEFENSES.index(m) if m in DEFENSES else len(DEFENSES), a, m)


def _earlier(out: Path, settings: dict) -> tuple[dict, dict, dict]:
    """Rows ((attack, method) -> row), per-image predictions and sample images (uint8, "attack/defense" -> array)
    of an earlier run in ``out`` whose settings equal ``settings`` except the device and the attacks run; rows of
    an attack whose parameters differ from ATTACKS' are not returned."""
    old = earlier_run(out / "defense.json", {k: v for k, v in settings.items() if k not in ("device", "attacks")})
    if old is None:
        return {}, {}, {}
    try:
        params = old["settings"].get("attacks", {})
        rows = {(r["attack"], r["method"]): r for r in old["results"]
                if r["attack"] not in ATTACKS or params.get(r["attack"]) == ATTACKS[r["attack"]]}
        return rows, old.get("per_image", {}), load_samples(out / "defense_samples.npz")
    except (KeyError, ValueError, OSError):
        return {}, {}, {}


def markdown_table(rows: list[dict]) -> str:
    col = {"none": 0, "cowboy": 1, "defense_gan": 2, "mimic": 3}
    lines = ["| attack | defense | n | accuracy (%) [95% CI] | paper (%) |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        p = PAPER_FIG4.get(r["attack"])
        ref = f"{p[col[r['method']]]:.1f}" if p and r["method"] in col else ""
        lines.append(f"| {r['attack']} | {r['method']} | {r['n']} | {accuracy_text(r['accuracy'], r['accuracy_ci95'])} | {ref} |")
    return "\n".join(lines) + "\n"


def _figures(out: Path, rows, adv_store, clean, alphas) -> None:
    from ..io import make_grid

    for a, d in adv_store.items():  # uint8 (8, 28, 28, 1) samples: clean, adversarial, each defense's output
        tiles = np.concatenate([clean, *d.values()])
        save_png(out / f"defense_{a}.png", make_grid(tiles, ncol=len(clean)))
    plt = pyplot()
    if plt is None:  # the figures are optional; the tables and JSON are not
        return
    acc = {(r["attack"], r["method"]): r["accuracy"] for r in rows}
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for d in ("none", "defense_gan", "mimic"):
        ys = [acc.get(("none", d))] + [acc.get((f"universal@{al:g}", d)) for al in alphas]
        if all(v is not None for v in ys):
            ax.plot([0, *alphas], ys, marker="o", label=d)
    ax.set_xlabel("alpha (scale of the universal FGSM perturbation)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Universal perturbation (Fashion-MNIST)")
    fig.tight_layout()
    save_figure(fig, out / "defense_universal.png")
