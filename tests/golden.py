"""Golden outputs of the solver: every task preset, PGD, the oracle and keep_observed on fixed faces.

``python tests/golden.py [--only-new] [--redo CASE ...]`` records ``tests/data/golden.npz`` (``--only-new``: only
cases added since; ``--redo``: those cases again, the others kept, for a deliberate change of them); ``tests/test_golden.py`` re-runs the same cases and
asserts that every output is unchanged (max abs difference <= 1e-6 on the CPU). A short schedule keeps the whole
set to about a minute; the faces are the 16 demo faces in ``examples/clean`` (held-out CelebA faces) and, for the
Fashion-MNIST presets, images drawn from the shipped fmnist28 generator.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "data" / "golden.npz"
SHORT = dict(warm_steps=30, select_after=20, T=2, T1=4, T2=4)  # the short schedule of every case
B = 4  # observations per group

FACE_TASKS = ("gray_blur", "stylize", "negative", "stuck_pixels", "occlusion", "inpainting")
FMNIST_TASKS = ("binarize", "drop_pixels", "blur_negative")


def _faces(n: int) -> torch.Tensor:
    from mimic.io import read_image, to_tensor

    files = sorted((ROOT / "examples" / "clean").glob("*.png"))[:n]
    return to_tensor(np.stack([read_image(p) for p in files]))  # (n, 3, 64, 64) in [-1, 1]


def _observe(corr, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The corruption of x, quantised to 8 bits as a saved observation is."""
    from mimic.io import to_tensor, to_uint8

    with torch.no_grad():
        return to_tensor(to_uint8(corr(x, generator=torch.Generator().manual_seed(seed))))


def summarise(x, fx, z, obs_loss) -> dict:
    """What is stored of one solve: z and L_obs in full; x and f(x) (S, B, C, H, W) as per-image sums of their
    values and squares in float64 (x = G(z) follows from z; the sums catch any change to a post-step or f)."""
    d = {"z": z.numpy(), "obs_loss": obs_loss.numpy()}
    for k, v in (("x", x), ("fx", fx)):
        v = v.double().flatten(2)
        d[f"{k}_sum"], d[f"{k}_sq"] = v.sum(2).numpy(), v.square().sum(2).numpy()
    return d


BEFORE_ADAPT = {"adapt_steps": 0, "no_harm": 0.0}  # the blind preset as it was before adaptation and do-no-harm
BEFORE_GROUP = {"lam_group": 0.0, **BEFORE_ADAPT}  # ... and before the group term


def cases():
    """Yield (name, run) where run() -> dict of output arrays; the same cases for recording and testing."""
    from mimic.corruptions import get_corruption
    from mimic.engine import solve
    from mimic.priors import load_prior
    from mimic.tasks import get_task

    faces = load_prior("celeba64", device="cpu")
    x = _faces(2 * B)

    def run(pr, y, cfg, seed=0, **kw):
        out = solve(pr.G, pr.D, y, cfg, generator=torch.Generator().manual_seed(seed), stats=pr.group_stats, **kw)
        return summarise(out.x, out.fx, out.z, out.obs_loss)

    for task in FACE_TASKS:
        t = get_task(task)
        corr = get_corruption(t.corruption)
        y = _observe(corr, x[:B], 1)[None]  # (1, B, C_obs, H, W)
        ov = dict(SHORT, robust_at=25) if t.config.robust_at else SHORT
        cfg = t.config.replace(**ov)
        yield f"{task}/mimic", lambda y=y, cfg=cfg: run(faces, y, cfg)
        yield f"{task}/pgd", lambda y=y, cfg=cfg: run(faces, y, cfg, method="pgd")
        mask = corr.known_mask(None, y[0])
        if mask is not None:
            yield f"{task}/oracle", lambda y=y, cfg=cfg, m=mask: run(faces, y, cfg, method="pgd", weight=m[None])
        else:
            yield f"{task}/oracle", lambda y=y, cfg=cfg, c=corr: run(
                faces, y, cfg, method="pgd", operator=lambda v: c(v, generator=torch.Generator().manual_seed(2)))
        yield f"{task}/blind", lambda y=y: run(faces, y, get_task("blind").config.replace(**BEFORE_GROUP, **SHORT))
    # two groups at once, the second one short (padding), with the blind preset
    y2 = torch.stack([_observe(get_corruption("negative"), x[:B], 3), _observe(get_corruption("occlusion"), x[B:], 4)])
    valid = torch.ones(2, B)
    valid[1, -1] = 0
    # (the cases recorded before the group term existed run without it: they show that it changes nothing when off)
    # (and those recorded before the generator adaptation and do-no-harm, without them)
    blind = get_task("blind").config.replace(**BEFORE_GROUP, **SHORT)
    yield "blind/two_groups", lambda: run(faces, y2, blind, valid=valid)
    yield "blind/group_term", lambda: run(faces, y2, get_task("blind").config.replace(**BEFORE_ADAPT, **SHORT),
                                          valid=valid)
    yield "blind/adapt", lambda: run(faces, y2, get_task("blind").config.replace(**SHORT, adapt_steps=8, no_harm=0.025),
                                     valid=valid)
    yield "blind/paper_surrogate", lambda: run(faces, y2[:1], blind.replace(surrogate="paper", inits=("identity",)))
    yield "blind/restarts", lambda: run(faces, y2[:1], blind.replace(restarts=2))
    # keep_observed: an observation with fill (removed pixels) and one without (noise only)
    for name, kw in (("remove_pixel", {"p": 0.9}), ("convolve_noise", {"l": 3, "sigma": 0.15}),
                     ("patch_band", {"h": 20})):
        y = _observe(get_corruption(name, **kw), x[:B], 5)[None]
        for method in ("mimic", "pgd"):
            yield f"keep/{name}/{method}", lambda y=y, m=method: run(
                faces, y, blind.replace(keep_observed=True), method=m)
    # Fashion-MNIST presets on images drawn from the fmnist28 prior
    fm = load_prior("fmnist28", device="cpu")
    with torch.no_grad():
        xf = fm.G(torch.rand(B, fm.nz, generator=torch.Generator().manual_seed(7)) * 2 - 1)
    for task in FMNIST_TASKS:
        t = get_task(task)
        y = _observe(get_corruption(t.corruption), xf, 6)[None]
        cfg = t.config.replace(**SHORT)
        yield f"{task}/mimic", lambda y=y, cfg=cfg: run(fm, y, cfg)
        yield f"{task}/pgd", lambda y=y, cfg=cfg: run(fm, y, cfg, method="pgd")
    yield "adversarial/mimic", lambda: run(fm, _observe(get_corruption("blur_negative"), xf, 8)[None],
                                           get_task("adversarial").config.replace(**SHORT))


def record(path: Path = GOLDEN, only_new: bool = False, redo: tuple = ()) -> None:
    """Record every case (or, with ``only_new`` or ``redo``, only the cases not yet in the file and the cases named
    in ``redo``, keeping the others as they are)."""
    torch.set_num_threads(2)
    data = dict(np.load(path)) if (only_new or redo) and path.exists() else {}
    unknown = set(redo) - {name for name, _ in cases()}
    if unknown:
        raise SystemExit(f"golden.py: no case named {', '.join(sorted(unknown))}")
    data = {k: v for k, v in data.items() if k.rsplit("/", 1)[0] not in redo}
    have = {k.rsplit("/", 1)[0] for k in data}
    for name, fn in cases():
        if name in have:
            continue
        for k, v in fn().items():
            data[f"{name}/{k}"] = v
        print(name, file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(data)} arrays)")


if __name__ == "__main__":
    args = sys.argv[1:]
    redo = tuple(args[args.index("--redo") + 1:]) if "--redo" in args else ()
    record(only_new="--only-new" in args, redo=redo)
