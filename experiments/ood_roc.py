"""Out-of-prior warning: which reference-free score tells faces from non-faces, and at which threshold. The decision
it supports: ``mimic.ood.face_score`` (the observation's smoothed gradient field against that of f(G(z)),
``Recovery.mimicked``, sigma ``mimic.ood.SIGMA``) and ``mimic.ood.THRESHOLD``.

A recovery with the ``celeba64`` prior turns anything into a face. Candidate scores that need no clean reference, on

- faces: validation CelebA faces (``split_files(...).val``, never the test half), clean and under every face
  corruption of the registry (gray_blur, stylize, negative, stuck_pixels, occlusion, inpainting, remove_pixel,
  remove_pixel_channel, convolve_noise, patch_band; seed 0), plus the 16 committed faces of ``examples/clean``;
- non-faces: scikit-image's sample images (astronaut and lfw_subset, faces, left out; cat is chelsea), each
  centre-cropped and 5 random crops at 0.3 / 0.5 / 0.7 of the shorter side, area-resized to 64x64 (grayscale sources
  kept 1-channel, as a gray file is read), plus flat, ramp and noise images: 157.

Every kind is recovered in its own groups of 25 (one shared surrogate per group: faces of one corruption, or
non-faces only, mixed sources) with a short blind recovery (``recover(task=None, warm_steps=100, T=3, T1=10,
T2=10)``, seed 0). Candidates (higher = more face-like): D's logit on the observation, the recovery and f(G(z));
minus the observation loss; minus the L1 distance of the observation to the recovery and to f(G(z)); minus the
latent norm and its share at the box's edge; correlations of observation and recovery (gray pixels, 8x8 block means,
gradient magnitudes of 4x4 block means); ``face_score`` against the recovery and against f(G(z)) at several sigmas.

Faces are split by face index (even: choose half, odd: check half; all corruptions of one face in the same half),
non-faces by source image (alternate sources). Per score the threshold is chosen on the choose half: the largest
value below which at most 1% of the faces of *every* kind fall (with 8-25 faces per kind and half: the lowest face).
The rule that picked the shipped score: the most non-faces of the choose half below that threshold, ties broken by
the choose half's AUC (printed as "rule picks"). The table prints the ROC AUC (all, choose, check), the threshold and
its detection rate on the choose half, and on the check half the worst kind's false-warning rate, the pooled face
false-warning rate and the non-face detection rate; then the shipped score per kind at ``mimic.ood.THRESHOLD``.

Recoveries are cached per group under ``--cache`` (a re-run only scores, in under a minute); ``--budget-s`` stops
recovering after that many seconds so that the collection can be spread over short runs. Reproduce (CPU, one
thread: 30 groups, 723 images, 3-7 s per image, about an hour in all on a shared 2-core machine; repeat the command
until it prints the table; expect for face_score mimicked s=0.75: AUC 0.971, threshold 0.319, check half: worst kind
occlusion 0.040, face FW 0.004, non-face detection 0.679; D(rec) AUC 0.57, -obs_loss 0.57):

    python experiments/ood_roc.py --n 50 --budget-s 300
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mimic.priors.report import roc_auc

FACE_CORRUPTIONS = ("gray_blur", "stylize", "negative", "stuck_pixels", "occlusion", "inpainting", "remove_pixel",
                    "remove_pixel_channel", "convolve_noise", "patch_band")
SCHEDULE = dict(warm_steps=100, T=3, T1=10, T2=10)
GROUP = 25
# scikit-image sample images that are not faces (astronaut and lfw_subset are; cat is chelsea)
RGB_SOURCES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel",
               "logo", "stereo_motorcycle")
GRAY_SOURCES = ("camera", "coins", "moon", "page", "horse", "brick", "grass", "gravel", "text", "clock",
                "checkerboard", "cell", "microaneurysms", "binary_blobs", "shepp_logan_phantom")
CROP_SCALES = (0.3, 0.5, 0.7)  # random crops: side as a fraction of the image's shorter side
CROPS = 5  # random crops per source image (plus the centre crop)
SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # face_score smoothing candidates
# what the shipped face_score compares the observation with: the recovery ("rec") or f(recovery) ("mimicked")
CHOSEN_REF = "mimicked"


# ----------------------------------------------------------------------------------------------------------- data
def _skimage_uint8(name: str) -> np.ndarray:
    import skimage.data

    a = getattr(skimage.data, name)()
    if isinstance(a, tuple):  # stereo_motorcycle: (left, right, disparity)
        a = a[0]
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip((a - a.min()) / max(float(a.max() - a.min()), 1e-12) * 255, 0, 255).round().astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    return np.ascontiguousarray(a)


def _synthetic(rng: np.random.Generator) -> list:
    """(name, uint8 (64, 64, C)) flat, ramp and noise images."""
    import cv2

    out = []
    for v in (0, 128, 255):
        out.append((f"flat{v}_rgb", np.full((64, 64, 3), v, np.uint8)))
    out.append(("flat_red_rgb", np.tile(np.array([200, 30, 30], np.uint8), (64, 64, 1))))
    out.append(("flat_sky_rgb", np.tile(np.array([120, 170, 230], np.uint8), (64, 64, 1))))
    out.append(("ramp_rgb", np.repeat(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))[..., None], 3, -1)))
    out.append(("uniform_rgb", rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)))
    out.append(("gauss_rgb", np.clip(128 + 40 * rng.standard_normal((64, 64, 3)), 0, 255).astype(np.uint8)))
    smooth = cv2.GaussianBlur(rng.standard_normal((64, 64, 3)).astype(np.float32), (0, 0), 6)
    out.append(("smooth_rgb", np.clip(128 + smooth / smooth.std() * 50, 0, 255).astype(np.uint8)))
    out.append(("flat90_gray", np.full((64, 64, 1), 90, np.uint8)))
    out.append(("uniform_gray", rng.integers(0, 256, (64, 64, 1)).astype(np.uint8)))
    smooth = cv2.GaussianBlur(rng.standard_normal((64, 64)).astype(np.float32), (0, 0), 4)
    out.append(("smooth_gray", np.clip(128 + smooth / smooth.std() * 50, 0, 255).astype(np.uint8)[..., None]))
    out.append(("ramp_gray", np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))[..., None]))
    return out


def nonfaces(seed: int = 0) -> list:
    """(source, name, uint8 (64, 64, C)), C = 3 for colour sources and 1 for grayscale ones."""
    from mimic.data import celeba_crop

    rng = np.random.default_rng(seed)
    out = []
    for src in RGB_SOURCES + GRAY_SOURCES:
        a = _skimage_uint8(src)
        if a.ndim == 2:
            a = a[..., None]
        if src in RGB_SOURCES and a.shape[-1] == 1:
            a = np.repeat(a, 3, -1)
        out.append((src, f"{src}/centre", celeba_crop(a, 64, crop_fraction=1.0).reshape(64, 64, -1)))
        h, w = a.shape[:2]
        for k in range(CROPS):
            side = int(round(CROP_SCALES[k % len(CROP_SCALES)] * min(h, w)))
            top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = a[top : top + side, left : left + side]
            out.append((src, f"{src}/crop{k}", celeba_crop(crop, 64, crop_fraction=1.0).reshape(64, 64, -1)))
    for name, im in _synthetic(rng):
        out.append((name, name, im))
    return out


def face_kinds(n: int) -> dict:
    """kind -> (names, uint8 observations (N, 64, 64, C), face index (N,))."""
    from mimic.bench.report_utils import validation_faces
    from mimic.corruptions import get_corruption
    from mimic.io import read_image, to_tensor, to_uint8

    clean_u8, _ = validation_faces(n)
    idx = np.arange(n)
    kinds = {"clean": ([f"clean/{i:04d}" for i in idx], clean_u8, idx)}
    clean = to_tensor(clean_u8)
    for c in FACE_CORRUPTIONS:
        y = to_uint8(get_corruption(c)(clean, generator=torch.Generator().manual_seed(0)))
        kinds[c] = ([f"{c}/{i:04d}" for i in idx], y, idx)
    ex = sorted((Path(__file__).resolve().parent.parent / "examples" / "clean").glob("*.png"))
    if ex:
        arr = np.stack([np.asarray(read_image(p)).reshape(64, 64, -1) for p in ex])
        kinds["examples"] = ([f"examples/{p.stem}" for p in ex], arr, np.arange(len(ex)))
    return kinds


# ---------------------------------------------------------------------------------------------------- collection
def groups(n: int) -> list:
    """(key, kind, names, uint8 obs (g, 64, 64, C), half (g,) 0 choose / 1 check, is_face) per group of <= 25."""
    out = []
    for kind, (names, y, idx) in face_kinds(n).items():
        for s in range(0, len(names), GROUP):
            sl = slice(s, s + GROUP)
            out.append((f"{kind}_{s // GROUP}", kind, names[sl], y[sl], idx[sl] % 2, True))
    nf = nonfaces()
    srcs = list(dict.fromkeys(s for s, _, _ in nf))
    half_of = {s: i % 2 for i, s in enumerate(srcs)}
    for ch, label in ((3, "rgb"), (1, "gray")):
        items = [t for t in nf if t[2].shape[-1] == ch]
        order = np.random.default_rng(1).permutation(len(items))  # mix sources within groups
        items = [items[i] for i in order]
        for s in range(0, len(items), GROUP):
            part = items[s : s + GROUP]
            out.append((f"nonface_{label}_{s // GROUP}", f"nonface_{label}", [p[1] for p in part],
                        np.stack([p[2] for p in part]), np.array([half_of[p[0]] for p in part]), False))
    return out


def collect(key, names, y, cache: Path) -> dict:
    f = cache / f"{key}.npz"
    if f.exists():
        return dict(np.load(f, allow_pickle=False))
    from mimic import recover

    t0 = time.perf_counter()
    r = recover(list(y), names=list(names), task=None, prior="celeba64", device="cpu", seed=0, **SCHEDULE)
    sec = time.perf_counter() - t0
    d = dict(obs=np.stack(r.observed), rec=r.tensor.numpy(), z=r.z.numpy(), obs_loss=r.obs_loss,
             mimicked=np.stack(r.mimicked), fill=r.fill, seconds=np.float64(sec))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.tmp.npz"
    np.savez_compressed(tmp, **d)
    tmp.replace(f)
    print(f"recovered {key}: {len(names)} images in {sec:.0f} s", flush=True)
    return d


# -------------------------------------------------------------------------------------------------------- scores
def _gray(t: torch.Tensor) -> torch.Tensor:
    return t.mean(1, keepdim=True)


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-8)


def _gradmag(t: torch.Tensor) -> torch.Tensor:
    gx, gy = t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :]
    return (gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).sqrt()


def scores(d: dict, prior) -> dict:
    """name -> (n,) float; higher = more face-like."""
    from mimic.io import to_tensor
    from mimic.ood import face_score

    y, x, z = to_tensor(d["obs"]), torch.from_numpy(d["rec"]), torch.from_numpy(d["z"])
    mim = to_tensor(d["mimicked"])
    y3 = y.expand(-1, 3, -1, -1) if y.shape[1] == 1 else y
    xo = _gray(x) if y.shape[1] == 1 else x  # the recovery in the observation's channels
    with torch.no_grad():
        d_obs, d_rec = prior.D(y3).flatten(), prior.D(x).flatten()
        d_mim = prior.D(mim.expand(-1, 3, -1, -1)).flatten()
    gy, gx = _gray(y), _gray(x)
    s = {
        "D(obs)": d_obs,
        "D(rec)": d_rec,
        "D(mimicked)": d_mim,
        "-obs_loss": -torch.from_numpy(d["obs_loss"]).float(),
        "-L1(obs,rec)": -(y - xo).abs().flatten(1).mean(1),
        "-L1(obs,mimicked)": -(y - mim).abs().flatten(1).mean(1),
        "-|z|": -z.norm(dim=1),
        "-share |z|>0.99": -(z.abs() > 0.99).float().mean(1),
        "|corr(obs,rec)| gray": _corr(gy, gx).abs(),
        "|corr| gray 8x8 means": _corr(F.avg_pool2d(gy, 8), F.avg_pool2d(gx, 8)).abs(),
        "corr |grad| 4x4 means": _corr(_gradmag(F.avg_pool2d(gy, 4)), _gradmag(F.avg_pool2d(gx, 4))),
    }
    for ref, t in (("rec", x), ("mimicked", mim)):
        for sigma in SIGMAS:
            s[f"face_score {ref} s={sigma:g}"] = torch.as_tensor(face_score(d["obs"], t, sigma=sigma))
    return {k: np.asarray(v, dtype=np.float64) for k, v in s.items()}


def pick_threshold(face_by_kind: dict, max_fpr: float = 0.01) -> float:
    """The largest t such that in every kind at most ``max_fpr`` of the faces score below t."""
    t = np.inf
    for v in face_by_kind.values():
        v = np.sort(v)
        k = int(np.floor(max_fpr * len(v)))  # faces of this kind allowed below t
        t = min(t, v[k])
    return float(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="validation faces per kind (clean and each corruption)")
    ap.add_argument("--cache", default="runs/ood_roc", help="folder of the cached recoveries")
    ap.add_argument("--budget-s", type=float, default=float("inf"),
                    help="stop recovering new groups after this many seconds (re-run to go on)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--partial", action="store_true", help="score the cached groups only (recover nothing)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mimic import load_prior

    cache = Path(args.cache) / f"n{args.n}"
    t0 = time.perf_counter()
    gs = groups(args.n)
    data = {}
    # every kind's first group first (non-faces before faces), so that a partial cache already spans all kinds
    order = [] if args.partial else sorted(gs, key=lambda g: (int(g[0].rsplit("_", 1)[1]), g[5]))
    for key, kind, names, y, half, is_face in order:
        if not (cache / f"{key}.npz").exists() and time.perf_counter() - t0 > args.budget_s:
            left = sum(not (cache / f"{k}.npz").exists() for k, *_ in gs)
            print(f"budget spent: {left} of {len(gs)} groups left to recover; run again", flush=True)
            return
        data[key] = collect(key, names, y, cache)
    if args.partial:
        gs = [g for g in gs if (cache / f"{g[0]}.npz").exists()]
        data = {g[0]: collect(g[0], g[2], g[3], cache) for g in gs}
    prior = load_prior("celeba64", device="cpu")
    rows, secs, n_img = {}, 0.0, 0
    for key, kind, names, y, half, is_face in gs:
        d = data[key]
        secs, n_img = secs + float(d["seconds"]), n_img + len(names)
        for name, v in scores(d, prior).items():
            rows.setdefault(name, []).append((kind, half, is_face, v, names))
    n_face = sum(len(n) for _, _, n, _, _, f in gs if f)
    n_non = sum(len(n) for _, _, n, _, _, f in gs if not f)
    print(f"\n{n_face} face observations ({args.n} validation faces x {1 + len(FACE_CORRUPTIONS)} kinds + examples), "
          f"{n_non} non-faces; recovery {secs / n_img:.1f} s per image on this CPU ({args.threads} thread(s))")
    print("thresh: chosen on the choose half (at most 1% of the faces of every kind below it); det: non-faces below it;"
          "\nFW: faces below it (false warnings), worst kind and pooled\n")
    hdr = (f"{'score (higher = face)':28s} {'AUC':>6s} {'AUC cho':>7s} {'AUC chk':>7s} {'thresh':>8s} "
           f"{'det cho':>7s} | "
           f"{'check half: worst kind FW':>32s} {'face FW':>7s} {'det':>6s}")
    print(hdr)
    print("-" * len(hdr))
    detail = {}
    for name, parts in rows.items():
        def cat(face, half=None):
            return np.concatenate([v if half is None else v[h == half] for k, h, f, v, _ in parts if f == face])
        bk_cho, bk_chk = {}, {}
        for k, h, f, v, _ in parts:
            if f:
                bk_cho.setdefault(k, []).append(v[h == 0])
                bk_chk.setdefault(k, []).append(v[h == 1])
        bk_cho = {k: np.concatenate(v) for k, v in bk_cho.items()}
        bk_chk = {k: np.concatenate(v) for k, v in bk_chk.items()}
        t = pick_threshold(bk_cho)
        fw = {k: float((v < t).mean()) for k, v in bk_chk.items()}
        worst = max(fw, key=fw.get)
        detail[name] = (t, bk_chk, parts, float((cat(False, 0) < t).mean()), roc_auc(cat(True, 0), cat(False, 0)))
        print(f"{name:28s} {roc_auc(cat(True), cat(False)):6.3f} {roc_auc(cat(True, 0), cat(False, 0)):7.3f} "
              f"{roc_auc(cat(True, 1), cat(False, 1)):7.3f} {t:8.3f} {float((cat(False, 0) < t).mean()):7.3f} | "
              f"{worst + ' ' + format(fw[worst], '.3f'):>32s} {float((cat(True, 1) < t).mean()):7.3f} "
              f"{float((cat(False, 1) < t).mean()):6.3f}")
    pick = max(detail, key=lambda k: (detail[k][3], detail[k][4]))
    print(f"\nrule picks: {pick} (choose half: detection {detail[pick][3]:.3f}, AUC {detail[pick][4]:.3f})")
    from mimic.ood import SIGMA, THRESHOLD

    name = f"face_score {CHOSEN_REF} s={SIGMA:g}"
    t, bk, parts = detail[name][:3]
    print(f"\nchosen: {name}; threshold chosen here {t:.4f}, mimic.ood.THRESHOLD {THRESHOLD}. Check half:")
    for k, v in bk.items():
        print(f"  {k:22s} n={len(v):3d}  min {v.min():.3f}  median {np.median(v):.3f}  "
              f"warned {float((v < t).mean()):.3f} (at THRESHOLD {float((v < THRESHOLD).mean()):.3f})")
    non = [(float(a), n, h) for k, h, f, v, nm in parts if not f for a, n, h in zip(v, nm, h)]
    nchk = np.array([a for a, _, h in non if h == 1])
    print(f"  {'non-faces':22s} n={len(nchk):3d}  max {nchk.max():.3f}  median {np.median(nchk):.3f}  "
          f"flagged {float((nchk < t).mean()):.3f} (at THRESHOLD {float((nchk < THRESHOLD).mean()):.3f})")
    missed = sorted((a, n) for a, n, h in non if a >= THRESHOLD)
    print(f"non-faces (both halves) not flagged at THRESHOLD: {len(missed)} of {len(non)}: "
          + ", ".join(f"{n} {a:.3f}" for a, n in missed))
    named = [(n, a) for a, n, _ in non if n.split("/")[0] in ("coffee", "rocket", "chelsea", "camera")
             and n.endswith("centre")]
    print("centre crops: " + ", ".join(f"{n} {a:.3f}" for n, a in named))


if __name__ == "__main__":
    main()
