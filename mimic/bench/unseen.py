"""`mimic bench unseen`: kinds of damage the presets were never tuned on, against PGD and the observation.

The promise of the blind mode is a folder spoiled by a corruption nobody named. These fourteen kinds of damage are
written here, outside the registered corruptions and tasks, each at two strengths, and split into two halves fixed
before anything was tuned on them: the ``tune`` half may guide choices (on validation faces), the ``heldout``
half is the figure that counts (on the held-out test faces). Families: global tone (gamma, veil, vignetting),
colour (cast, sepia, channel swap), compression (JPEG), blur kernels (motion, defocus), noise models (shot noise,
salt and pepper), resampling, and two combinations (a camera pipeline; a colour-and-tone change with noise).

A third half, ``mild``, holds five kinds of light damage (sensor noise, over-sharpening, desaturation, posterisation,
lateral chromatic aberration) whose observations are already closer to the clean faces (28-34 dB) than the prior's
range (22 dB): there the question is whether the blind preset does no harm, i.e. comes back at least about as close
as it came in. They were written after the preset was chosen and are held out like the ``heldout`` half.

Rows per (kind, strength): the observation itself, ``pgd`` (GAN-prior inversion), ``blind`` (the task-agnostic
preset) and, where the damage has a differentiable part, ``oracle`` (PGD through that known operator). PSNR and SSIM
against the clean faces, the gain over PGD with its 95% interval.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..api import recover
from ..corruptions.base import gaussian_kernel
from ..corruptions.paper import GRAY_WEIGHTS
from ..engine import MimicConfig, solve
from ..io import read_image, save_json, save_png, save_text, to_tensor, to_uint8
from ..metrics import SSIM_WINDOW, mean_ci95, psnr, ssim
from ..tasks import get_task
from .report_utils import bench_setup, heldout_test_faces, method_overrides, validation_faces

__all__ = ["DAMAGES", "Damage", "bench_unseen", "damage", "markdown_table"]

METHODS = ("pgd", "blind", "oracle", "pgd_adapt", "blind_adapt", "oracle_adapt")


# ---- the damage, on x (N, 3, H, W) in [-1, 1]; u = (x + 1) / 2 in [0, 1] -------------------------------------------

def _u(x):
    return (x + 1) / 2


def _x(u):
    return u.clamp(0, 1) * 2 - 1


def _conv(x, k):
    """Each channel of x convolved with the 2-D kernel k (replicated borders)."""
    c, (kh, kw) = x.shape[1], k.shape
    k = k.to(x).view(1, 1, kh, kw).repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate"), k, groups=c)


def _disk(r: float) -> torch.Tensor:
    n = 2 * math.ceil(r) + 1
    yy, xx = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    # anti-aliased disk: the area of each pixel inside radius r, by 8x8 supersampling
    s = (torch.arange(8) + 0.5) / 8 - 0.5
    d = ((yy[..., None, None] + s[:, None]) ** 2 + (xx[..., None, None] + s[None, :]) ** 2 <= r * r).float().mean((-1, -2))
    return d / d.sum()


def _motion(length: int) -> torch.Tensor:
    k = torch.zeros(length, length)
    k[length // 2] = 1.0 / length  # horizontal
    return k


def _gamma(x, g):
    return _x(_u(x).clamp(min=1e-6) ** g)


def _veil(x, a):
    return _x(a * _u(x) + (1 - a) * 0.8)


def _cast(x, gains):
    return _x(_u(x) * x.new_tensor(gains).view(1, 3, 1, 1))


_SEPIA = torch.tensor([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def _sepia(x, s):
    u = _u(x)
    return _x((1 - s) * u + s * torch.einsum("oc,nchw->nohw", _SEPIA.to(x), u))


def _vignette(x, s):
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    r2 = ((yy**2 + xx**2) / 2).to(x)  # 0 at the centre, 1 in the corners
    return _x(_u(x) * (1 - s * r2))


def _resample(x, f):
    h, w = x.shape[-2:]
    return F.interpolate(F.interpolate(x, size=(h // f, w // f), mode="area"), size=(h, w), mode="bilinear",
                         align_corners=False)


def _jpeg(x, quality):
    import cv2

    out = []
    for im in to_uint8(x):  # (H, W, 3) RGB uint8
        ok, buf = cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return to_tensor(np.stack(out)).to(x)


def _shot(x, peak, gen):
    u = _u(x)
    return _x(torch.poisson((u * peak).cpu(), generator=gen).to(x) / peak)


def _salt_pepper(x, frac, gen):
    n, _, h, w = x.shape
    r = torch.rand(n, 1, h, w, generator=gen).to(x)
    salt = torch.rand(n, 1, h, w, generator=gen).to(x) < 0.5
    hit = r < frac
    return torch.where(hit, torch.where(salt, 1.0, -1.0), x)


def _gauss(x, sigma, gen):
    return (x + 2 * sigma * torch.randn(x.shape, generator=gen).to(x)).clamp(-1, 1)


def _oversharpen(x, a):
    """Unsharp masking pushed too far: halos along every edge (a 7-tap Gaussian of sigma 1 as the blur)."""
    k = gaussian_kernel(7, 1.0)
    return (x + a * (x - _conv(x, k[:, None] * k[None, :]))).clamp(-1, 1)


def _desaturate(x, s):
    u = _u(x)
    gray = torch.einsum("c,nchw->nhw", u.new_tensor(GRAY_WEIGHTS), u)[:, None]
    return _x((1 - s) * u + s * gray)


def _posterize(x, bits):
    levels = 2**bits - 1
    return _x(torch.round(_u(x) * levels) / levels)


def _aberration(x, s):
    """Lateral chromatic aberration: red magnified by 1 + s, blue by 1 - s about the centre (bilinear)."""
    n, _, h, w = x.shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    out = []
    for ch, k in ((0, 1 + s), (1, 1.0), (2, 1 - s)):
        grid = torch.stack([xx / k, yy / k], -1)[None].expand(n, h, w, 2).to(x)
        out.append(F.grid_sample(x[:, ch : ch + 1], grid, mode="bilinear", padding_mode="border", align_corners=True))
    return torch.cat(out, 1)


@dataclass(frozen=True)
class Damage:
    """One kind of damage at two strengths.

    apply(x, level, gen) -> y : x (N, 3, H, W) in [-1, 1], level 0 (the milder) or 1 (the stronger), gen a CPU
    generator
    operator(x, level) -> y : its differentiable, noise-free part (the oracle's operator), or None
    """

    name: str
    family: str
    half: str  # "tune", "heldout" or "mild": fixed before any tuning
    apply: Callable
    operator: Callable | None
    levels: tuple  # the two strengths, for the table


def _det(fn, levels):
    """A deterministic, differentiable damage: its own operator."""
    return (lambda x, lv, gen: fn(x, levels[lv])), (lambda x, lv: fn(x, levels[lv]))


def _mk(name, family, half, fn, levels, deterministic=True, operator=None):
    if deterministic:
        apply, op = _det(fn, levels)
        return Damage(name, family, half, apply, op, levels)
    return Damage(name, family, half, lambda x, lv, gen: fn(x, levels[lv], gen), operator, levels)


def _camera(x, p, gen):
    r, peak, q = p
    return _jpeg(_shot(_conv(x, _disk(r)), peak, gen), q)


def _colour_noise(x, p, gen):
    gains, g, sigma = p
    return _gauss(_gamma(_cast(x, gains), g), sigma, gen)


_CAMERA = ((1.0, 60.0, 40), (2.0, 20.0, 20))
_COLOUR = (((1.1, 1.0, 0.85), 1.3, 0.02), ((1.2, 1.0, 0.7), 1.6, 0.05))

DAMAGES: dict[str, Damage] = {d.name: d for d in [
    # --- tuning half ---
    _mk("gamma", "tone", "tune", _gamma, (1.5, 2.2)),
    _mk("sepia", "colour", "tune", _sepia, (0.5, 1.0)),
    _mk("jpeg", "compression", "tune", lambda x, q, gen: _jpeg(x, q), (25, 10), deterministic=False),
    _mk("motion_blur", "blur", "tune", lambda x, n: _conv(x, _motion(n)), (5, 9)),
    _mk("shot_noise", "noise", "tune", _shot, (40.0, 12.0), deterministic=False),
    _mk("downsample", "resampling", "tune", _resample, (2, 4)),
    _mk("camera", "combination", "tune", _camera, _CAMERA, deterministic=False,
        operator=lambda x, lv: _conv(x, _disk(_CAMERA[lv][0]))),
    # --- held-out half ---
    _mk("veil", "tone", "heldout", _veil, (0.7, 0.45)),
    _mk("colour_cast", "colour", "heldout", _cast, ((1.12, 1.0, 0.82), (1.25, 1.0, 0.65))),
    _mk("channel_swap", "colour", "heldout", lambda x, p: x[:, list(p)], ((2, 1, 0), (1, 2, 0))),
    _mk("defocus", "blur", "heldout", lambda x, r: _conv(x, _disk(r)), (1.5, 3.0)),
    _mk("salt_pepper", "noise", "heldout", _salt_pepper, (0.04, 0.12), deterministic=False),
    _mk("vignette", "tone", "heldout", _vignette, (0.4, 0.7)),
    _mk("colour_noise", "combination", "heldout", _colour_noise, _COLOUR, deterministic=False,
        operator=lambda x, lv: _gamma(_cast(x, _COLOUR[lv][0]), _COLOUR[lv][1])),
    # --- mild half: damage that leaves the observation closer to the clean face (28-34 dB on validation faces) than
    # the prior's range (22 dB); held out like the half above: written after the preset was chosen, never tuned on ---
    _mk("sensor_noise", "noise", "mild", _gauss, (0.02, 0.04), deterministic=False),
    _mk("oversharpen", "sharpening", "mild", _oversharpen, (0.6, 1.2)),
    _mk("desaturate", "colour", "mild", _desaturate, (0.2, 0.4)),
    _mk("posterize", "quantisation", "mild", lambda x, b, gen: _posterize(x, b), (4, 3),
        deterministic=False),  # rounding has no gradient: no oracle
    _mk("aberration", "lens", "mild", _aberration, (0.02, 0.04)),
]}


def damage(name: str, x: torch.Tensor, level: int, *, seed: int = 0) -> np.ndarray:
    """The observation of clean faces ``x`` (N, 3, H, W) in [-1, 1] under damage ``name`` at ``level`` (0 the
    milder, 1 the stronger), as saved: uint8 (N, H, W, 3)."""
    if name not in DAMAGES:
        raise KeyError(f"unknown damage {name!r}; valid: {', '.join(DAMAGES)}")
    with torch.no_grad():
        return to_uint8(DAMAGES[name].apply(x, level, torch.Generator().manual_seed(seed)))


def _oracle(pr, d: Damage, level: int, y_u8: np.ndarray, dev, batch_size: int, overrides=None) -> np.ndarray:
    """PGD through the damage's known differentiable part (the blind preset's fit settings, with ``overrides``)."""
    cfg = get_task("blind").config.replace(**(overrides or {}))
    out = []
    for k in range(0, len(y_u8), batch_size):
        y = to_tensor(y_u8[k : k + batch_size]).to(dev)[None]  # (1, B, 3, H, W)
        o = solve(pr.G, pr.D, y, cfg, method="pgd", operator=lambda v: d.operator(v, level),
                  generator=torch.Generator().manual_seed(0))
        out.append(to_uint8(o.x[0]))
    return np.concatenate(out)


def bench_unseen(out, *, prior="celeba64", n: int = 25, half: str = "all", split: str = "test", offset: int = 0,
                 kinds=None, methods=METHODS, device="auto", seed: int = 0, batch_size: int = 25, data=None,
                 quick: bool = False, overrides: dict | None = None, log=print) -> dict:
    """Run the benchmark; writes ``OUT/unseen.json`` and ``OUT/unseen.md``; resumes what an earlier run with the same
    settings measured. ``half``: "tune", "heldout", "mild" or "all"; ``split``: "test" (held-out test faces, the reported
    figures) or "val" (validation faces, for tuning)."""
    out, dev, pr, overrides = bench_setup(out, prior, device, overrides, quick)
    if half not in ("tune", "heldout", "mild", "all"):
        raise ValueError(f"half must be tune, heldout, mild or all, got {half!r}")
    if split not in ("test", "val"):
        raise ValueError(f"split must be test or val, got {split!r}")
    bad = set(methods) - set(METHODS)
    if bad:
        raise ValueError(f"unknown method(s) {sorted(bad)}; valid: {', '.join(METHODS)}")
    names = list(kinds) if kinds else [k for k, d in DAMAGES.items() if half == "all" or d.half == half]
    for k in names:
        if k not in DAMAGES:
            raise KeyError(f"unknown damage {k!r}; valid: {', '.join(DAMAGES)}")
    if quick:
        n = min(n, 4)
    if data is not None or split == "test":
        clean_u8, source = heldout_test_faces(pr, n) if data is None else __import__(
            "mimic.priors.report", fromlist=["heldout_images"]).heldout_images(pr, n, data=data)
    else:
        clean_u8, source = validation_faces(n, offset)
    x = to_tensor(clean_u8)
    blind_config = _jsonable(get_task("blind").config.replace(**overrides).__dict__)
    settings = {"prior": pr.name, "prior_sha256": pr.sha256, "faces": source, "n": len(clean_u8), "seed": seed,
                "batch_size": batch_size, "overrides": overrides, "quick": quick}
    path = out / "unseen.json"
    rows = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
            if all(json.dumps(old["settings"].get(k), sort_keys=True, default=str) ==
                   json.dumps(v, sort_keys=True, default=str) for k, v in settings.items()):
                # a row is reused when it was measured with the configuration it uses now (the blind preset's; PGD
                # and the oracle only its parts that they use), so that a changed preset re-measures only its rows
                rows = [r for r in old["results"] if r["method"] == "observed"
                        or _uses(r["method"], r.get("config")) == _uses(r["method"], blind_config)]
        except (ValueError, KeyError):
            rows = []
    have = {(r["kind"], r["level"], r["method"]) for r in rows}
    t_all = time.perf_counter()

    def write():
        result = {"bench": "unseen", "settings": {**settings, "device": str(dev)}, "results": rows,
                  "versions": {"mimic": __version__, "torch": torch.__version__, "python": platform.python_version()},
                  "seconds": time.perf_counter() - t_all, "summary": summary(rows),
                  "summary_blind_adapt": summary(rows, "blind_adapt")}
        save_json(path, result)
        save_text(out / "unseen.md", markdown_table(rows))
        return result

    for k in names:
        d = DAMAGES[k]
        for level in (0, 1):
            y = damage(k, x, level, seed=seed)
            p_obs = psnr(y, clean_u8)
            if (k, level, "observed") not in have:
                rows.append(_row(k, d, level, "observed", p_obs, ssim(y, clean_u8), 0.0, dev, p_obs))
            base = None
            for m in methods:
                if (k, level, m) in have:
                    continue
                base_m, ov = method_overrides(m, overrides)
                if base_m == "oracle" and d.operator is None:
                    continue
                t0 = time.perf_counter()
                if base_m == "oracle":
                    rec = _oracle(pr, d, level, y, dev, batch_size, overrides=method_overrides(m, {})[1])
                else:
                    rec = recover(y, task=None, method="pgd" if base_m == "pgd" else "mimic", prior=pr,
                                  batch_size=batch_size, device=dev, seed=seed,
                                  names=[f"{k}{level}_{i:04d}" for i in range(len(y))], **ov).images
                p = psnr(rec, clean_u8)
                if m == "pgd":
                    base = p
                if base is None:
                    prev = next((r for r in rows if (r["kind"], r["level"], r["method"]) == (k, level, "pgd")), None)
                    base = None if prev is None else np.asarray(prev["per_image"])
                rows.append(_row(k, d, level, m, p, ssim(rec, clean_u8), time.perf_counter() - t0, dev, p_obs, base))
                rows[-1]["config"] = blind_config
                log(f"{k:13s} {level} {m:7s} PSNR {rows[-1]['psnr_mean']:6.2f} (observed {float(p_obs.mean()):.2f})")
                write()
    return write()


#: Fields of the blind preset that PGD and the oracle do not use (no surrogate, no identity loss, no group term).
_PGD_IGNORES = ("lam_group", "lam_I", "lr_s", "surrogate", "inits", "select_after", "select_margin", "T1", "no_harm")


def _jsonable(cfg: dict) -> dict:
    return json.loads(json.dumps(cfg, default=list))


def _uses(method: str, cfg: dict | None) -> str | None:
    """The part of the blind preset's configuration ``cfg`` that ``method`` uses, as a comparable string."""
    if cfg is None:
        return None
    # a field added to MimicConfig after a row was measured counts as its default; an _adapt method's own settings
    cfg = {**_jsonable(asdict(MimicConfig())), **cfg, **_jsonable(method_overrides(method, {})[1])}
    if method.removesuffix("_adapt") in ("pgd", "oracle"):
        cfg = {k: v for k, v in cfg.items() if k not in _PGD_IGNORES}
    return json.dumps(cfg, sort_keys=True)


def _row(kind, d, level, method, p, s, secs, dev, p_obs, base=None) -> dict:
    pm, pci = mean_ci95(p)
    sm, sci = mean_ci95(s)
    r = {"kind": kind, "family": d.family, "half": d.half, "level": level, "strength": str(d.levels[level]),
         "method": method, "n": len(p), "psnr_mean": pm, "psnr_ci95": pci, "ssim_mean": sm, "ssim_ci95": sci,
         "ssim_window": SSIM_WINDOW, "gain_over_observed_db": float(np.mean(p - p_obs)), "seconds": secs, "device": str(dev),
         "per_image": [float(v) for v in p]}
    if base is not None and method not in ("pgd", "observed"):
        gm, gci = mean_ci95(np.asarray(p) - np.asarray(base))
        r["gain_over_pgd_db"], r["gain_ci95"] = gm, gci
    return r


def summary(rows: list, method: str = "blind") -> dict:
    """Per half: ``method``'s (the blind preset's) mean gain over PGD, the settings where it beats PGD or falls below
    the observation, on tone/colour kinds the fraction of the oracle's gain over PGD it recovers, and per kind its
    mean change from the observation (over both strengths: the do-no-harm figure of the mild half)."""
    out = {}
    for half in ("tune", "heldout", "mild"):
        g = [r for r in rows if r["half"] == half and r["method"] == method]
        if not g:
            continue
        s = {"settings": len(g), "below_observation": sum(r["gain_over_observed_db"] < 0 for r in g)}
        vs = [r for r in g if "gain_over_pgd_db" in r]
        if vs:
            s["beats_pgd"] = sum(r["gain_over_pgd_db"] > 0 for r in vs)
            s["mean_gain_over_pgd_db"] = float(np.mean([r["gain_over_pgd_db"] for r in vs]))
        by_kind: dict = {}
        for r in g:
            by_kind.setdefault(r["kind"], []).append(r["gain_over_observed_db"])
        s["change_from_observation_db"] = {k: float(np.mean(v)) for k, v in by_kind.items()}
        frac = []
        for r in vs:
            if r["family"] not in ("tone", "colour"):
                continue
            o = next((q for q in rows if (q["kind"], q["level"], q["method"]) == (r["kind"], r["level"], "oracle")
                      and "gain_over_pgd_db" in q), None)
            if o is not None and o["gain_over_pgd_db"] > 0:
                frac.append(r["gain_over_pgd_db"] / o["gain_over_pgd_db"])
        if frac:
            s["tone_colour_fraction_of_oracle_gain"] = float(np.mean(frac))
        out[half] = s
    return out


def markdown_table(rows: list) -> str:
    """One table per half: rows (kind, strength), columns observed / PGD / blind / oracle PSNR (and the ``_adapt``
    methods' where they were run) and each blind method's gain over PGD; a summary line per blind method."""
    lines = []
    have = {r["method"] for r in rows}
    cols = [m for m in ("observed", "pgd", "blind", "blind_adapt", "oracle", "pgd_adapt", "oracle_adapt") if m in have]
    blinds = [m for m in ("blind", "blind_adapt") if m in have]
    names = {"observed": "observed", "pgd": "PGD"}
    for half, title in (("heldout", "Held-out kinds (the figure that counts)"), ("mild", "Mild damage (do no harm)"),
                        ("tune", "Tuning kinds")):
        keys = list(dict.fromkeys((r["kind"], r["level"]) for r in rows if r["half"] == half))
        if not keys:
            continue
        vs_obs = blinds if half == "mild" else []  # do no harm: the change from the observation itself
        head = ["kind", "family", "strength", *(names.get(m, m) for m in cols), *(f"{m} - PGD" for m in blinds),
                *(f"{m} - observed" for m in vs_obs)]
        lines += [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for k, lv in keys:
            by = {r["method"]: r for r in rows if (r["kind"], r["level"]) == (k, lv)}
            any_r = next(iter(by.values()))

            def cell(m):
                r = by.get(m)
                return "—" if r is None else f"{r['psnr_mean']:.2f}"

            def gain(m):
                g, gc = by.get(m, {}).get("gain_over_pgd_db"), by.get(m, {}).get("gain_ci95")
                return "—" if g is None else f"{g:+.2f} ± {gc:.2f}"

            lines.append(f"| {k} | {any_r['family']} | {any_r['strength']} | "
                         + " | ".join([*(cell(m) for m in cols), *(gain(m) for m in blinds),
                                       *(f"{by[m]['gain_over_observed_db']:+.2f}" if m in by else "—"
                                         for m in vs_obs)]) + " |")
        lines.append("")
        for m in blinds:
            s = summary(rows, m).get(half)
            if not s:
                continue
            line = (f"{m} beats PGD on {s['beats_pgd']} of {s['settings']} settings; mean gain "
                    f"{s['mean_gain_over_pgd_db']:+.2f} dB; " if "beats_pgd" in s else f"{m}: ")
            line += f"below the observation on {s['below_observation']} of {s['settings']}"
            if "tone_colour_fraction_of_oracle_gain" in s:
                line += (f"; recovers {100 * s['tone_colour_fraction_of_oracle_gain']:.0f}% of the oracle's gain "
                         "over PGD on tone/colour kinds")
            if half == "mild":
                line += ("; change from the observation per kind (both strengths): " + ", ".join(
                    f"{k} {v:+.2f} dB" for k, v in s["change_from_observation_db"].items()))
            lines += [line, ""]
        lines.append("")
    return "\n".join(lines)
