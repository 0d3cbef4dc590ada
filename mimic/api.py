"""The Python API: ``recover(images, task=...)``, and ``recover_groups``, the one path from prepared observations to
recoveries that ``recover`` and the folder runner share.

Images are cut into groups of at most ``batch_size`` observations (in input order, never mixing channel counts);
every group gets its own surrogate, and its randomness comes from its contents (the names of its images) and the
seed, not from its position in a run: a group gives the same recovery alone, in a resumed run or in any batch.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .engine import MimicConfig, solve
from .inputs import InputError, Prepared, prepare
from .io import to_tensor, to_uint8
from .ood import face_score, threshold_for
from .priors import Prior, load_prior
from .tasks import Task, get_task

__all__ = ["Recovery", "GroupResult", "recover", "recover_groups", "resolve_device", "make_groups", "group_seed",
           "fill_notice", "fit_config", "out_of_prior_notice", "with_reconstructor"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> the first CUDA device when there is one, else the CPU; "cpu", "cuda", "cuda:K" as given (an
    error naming the valid indices when CUDA or device K does not exist)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = str(device)
    if d == "cpu":
        return torch.device("cpu")
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        if not torch.cuda.is_available():
            raise InputError(f"--device {d}: no CUDA device is available (use auto or cpu)")
        n = torch.cuda.device_count()
        if d != "cuda" and int(d[5:]) >= n:
            raise InputError(f"--device {d}: no such GPU; valid: {', '.join(f'cuda:{k}' for k in range(n))}")
        return torch.device(d)
    raise InputError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:K")


def make_groups(channels: list[int], batch_size: int) -> list[list[int]]:
    """Groups of at most ``batch_size`` indices, in input order, never mixing channel counts."""
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    groups = []
    for c in sorted(set(channels)):
        idx = [i for i, ci in enumerate(channels) if ci == c]
        groups += [idx[k : k + batch_size] for k in range(0, len(idx), batch_size)]
    return sorted(groups, key=lambda g: g[0])


def group_seed(seed: int, names: list[str]) -> int:
    """The seed of one group: a hash of the run's seed and its images' names (63 bits)."""
    h = hashlib.sha256(f"{int(seed)}\n".encode() + "\n".join(names).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def fit_config(cfg: MimicConfig, prior: Prior, method: str) -> tuple[MimicConfig, list]:
    """The configuration a recovery with ``prior`` runs, and its notices: the group term (``lam_group``) needs the
    prior's training statistics (``group_stats.json``), so a prior without them runs with it off, and says so."""
    if method == "mimic" and cfg.lam_group and prior.group_stats is None:
        return cfg.replace(lam_group=0.0), [f"prior {prior.name} has no group statistics (group_stats.json; "
                                            "python -m tools.ship_prior --group-stats): the group term is off"]
    return cfg, []


def with_reconstructor(method: str, reconstructor, device, trust_unverified: bool = False):
    """``(method, reconstructor)`` a recovery runs with: a given reconstructor (name, folder or ``Reconstructor``)
    is loaded and replaces the method (``"reconstructor"``); without one both stay as they are."""
    if reconstructor is None:
        return method, None
    from .reconstructor import load_reconstructor

    return "reconstructor", load_reconstructor(reconstructor, device=device, trust_unverified=trust_unverified)


def fill_notice(n_images: int, mean_fraction: float) -> str:
    """The notice for images in which fill pixels were detected."""
    return (f"{n_images} image(s) hold a constant fill value in {100 * mean_fraction:.0f}% of their pixels on average; "
            "those pixels were left out of the fit (fill detection; fill=False / --no-fill fits them)")


@dataclass
class GroupResult:
    """One recovered group: per image uint8 arrays and figures, and the group's surrogate.

    images : (n, R, R, C) uint8 recoveries; mimicked : (n, R, R, C_obs) uint8, the surrogate applied to them;
    tensor : (n, C, R, R) float32 in [-1, 1] (CPU); z : (n, nz); obs_loss, fill : (n,) float; retried : whether
    the group diverged and ran again with a smaller step; observed_weight : (n,) float, the observation's share of
    each output (``MimicConfig.no_harm``), or None where do-no-harm did not run.
    """

    index: list  # indices of the group's images in the prepared input
    images: np.ndarray
    mimicked: np.ndarray
    tensor: torch.Tensor
    z: torch.Tensor
    obs_loss: np.ndarray
    fill: np.ndarray
    surrogate: dict
    history: dict
    retried: bool
    observed_weight: np.ndarray | None = None


def recover_groups(images: list, names: list, groups: list[list[int]], *, cfg: MimicConfig, prior: Prior,
                   method: str, device: torch.device, seed: int, groups_per_call: int | None = None,
                   callback=None, reconstructor=None):
    """Recover ``groups`` of prepared observations; yields a :class:`GroupResult` per group, in order.

    Parameters
    ----------
    images : list of uint8 (R, R, C) arrays, C in {1, prior channels}
    names : list of str
        One per image; with ``seed`` they seed each group (``group_seed``).
    groups : list of list of int
        Indices into ``images`` (``make_groups``).
    groups_per_call : int, optional
        Groups solved together (default: all on CUDA, 1 on a CPU, where two groups in one call take 1.9x one).
    reconstructor : mimic.reconstructor.Reconstructor, optional
        With ``method="reconstructor"``: each group is recovered by the trained network's forward pass (no prior, no
        surrogate); ``mimicked`` is one fresh draw of the corruption it was trained for, applied to the recovery.
    """
    if method == "reconstructor":
        if reconstructor is None:
            raise InputError("method 'reconstructor' needs a reconstructor (--reconstructor NAME_OR_PATH)")
        yield from _reconstruct_groups(images, names, groups, reconstructor, seed)
        return
    if method not in ("mimic", "pgd"):
        raise InputError(f"unknown method {method!r}; valid: mimic, pgd, reconstructor")
    R, C = prior.resolution, prior.channels
    gpc = groups_per_call or (len(groups) if device.type == "cuda" else 1)
    # calls: runs of at most gpc consecutive groups with the same channel count
    calls, cur = [], []
    for g in groups:
        if cur and (len(cur) >= gpc or images[cur[0][0]].shape[-1] != images[g[0]].shape[-1]):
            calls.append(cur)
            cur = []
        cur.append(g)
    if cur:
        calls.append(cur)
    for gs in calls:
        B, cobs = max(len(g) for g in gs), images[gs[0][0]].shape[-1]
        y = torch.zeros(len(gs), B, cobs, R, R)  # (S, B, C_obs, R, R), padded
        valid = torch.zeros(len(gs), B)
        for s, g in enumerate(gs):
            y[s, : len(g)] = to_tensor(np.stack([images[i] for i in g]))
            valid[s, : len(g)] = 1
        # one generator per call, seeded by its first group (a call is one group on a CPU)
        gen = torch.Generator().manual_seed(group_seed(seed, [names[i] for i in gs[0]]))
        out = solve(prior.G, prior.D, y.to(device), cfg, method=method, valid=valid.to(device), generator=gen,
                    stats=prior.group_stats,
                    callback=callback)
        x, fx, z, ol = out.x.cpu(), out.fx.cpu(), out.z.cpu(), out.obs_loss.cpu().numpy()
        frac = None if out.fill is None else out.fill.cpu().numpy()
        ow = None if out.observed_weight is None else out.observed_weight.cpu().numpy()
        for s, g in enumerate(gs):
            k = len(g)
            yield GroupResult(
                index=list(g), images=to_uint8(x[s, :k]), mimicked=to_uint8(fx[s, :k]), tensor=x[s, :k].clone(),
                z=z[s, :k].clone(), obs_loss=ol[s, :k].astype(float),
                fill=np.zeros(k) if frac is None else frac[s, :k].astype(float),
                surrogate={"kind": out.surrogate.kind, "init": out.init[s], "in_channels": C, "out_channels": cobs,
                           "state_dict": out.surrogate.group_state(s)},
                history={kk: v[:, s].tolist() for kk, v in out.history.items()}, retried=s in out.retried,
                observed_weight=None if ow is None else ow[s, :k].astype(float))


def _reconstruct_groups(images, names, groups, reconstructor, seed):
    """recover_groups with a trained reconstructor: one forward pass per group."""
    c_in = reconstructor.config["c_in"]
    corr = reconstructor.corruption
    for g in groups:
        for i in g:
            if images[i].shape[-1] != c_in:
                raise InputError(f"{names[i]}: {images[i].shape[-1]}-channel observation; reconstructor "
                                 f"{reconstructor.name!r} takes {c_in}-channel observations")
        y = to_tensor(np.stack([images[i] for i in g]))  # (n, C_obs, R, R) in [-1, 1]
        x = reconstructor(y)  # (n, C, R, R)
        gen = torch.Generator().manual_seed(group_seed(seed, [names[i] for i in g]))
        fx = corr(x, generator=gen)  # what one draw of the corruption does to the recovery
        yield GroupResult(index=list(g), images=to_uint8(x), mimicked=to_uint8(fx), tensor=x.clone(),
                          z=torch.zeros(len(g), 0), obs_loss=((fx - y) ** 2).mean(dim=(1, 2, 3)).numpy().astype(float),
                          fill=np.zeros(len(g)), surrogate={"kind": "reconstructor", "name": reconstructor.name,
                                                            "corruption": reconstructor.config["corruption"]},
                          history={}, retried=False)


@dataclass(repr=False)
class Recovery:
    """Result of :func:`recover`.

    Attributes
    ----------
    images : ndarray uint8 (N, R, R, C)
        The recovered images.
    tensor : Tensor float32 (N, C, R, R) in [-1, 1] (CPU)
    mimicked : list of uint8 (R, R, C_obs) arrays
        The surrogate applied to each recovery: what the corruption was estimated to do.
    observed : list of uint8 (R, R, C_obs) arrays
        The observations as used (after resizing).
    z : Tensor (N, nz) latent codes in [-1, 1]
    group : ndarray int (N,)
        Index of the group (and so of the surrogate) of each image.
    obs_loss : ndarray (N,) final L_obs per image
    surrogates : list of dict
        Per group: the surrogate kind, its kept start, channels and its weights (state dict of that group).
    history : list of dict
        Per group: name -> list of the group's mean loss after the warm start and each outer iteration.
    names : list of str
    fill : ndarray float (N,)
        Fraction of each observation's pixel values detected as a constant fill and left out of the fit.
    face_score : ndarray float (N,) or None
        How well each observation's edges line up with its ``mimicked`` image (``mimic.ood.face_score``): low when
        the prior probably made up a face for an image it cannot represent. Only for ``method="mimic"`` with a
        prior whose threshold was measured (``mimic.ood.threshold_for``: ``celeba64``); None otherwise.
    face_threshold : float or None
        That threshold (None where ``face_score`` is).
    out_of_prior : ndarray bool (N,) or None
        ``face_score`` below ``face_threshold`` (a warning, also in ``notices``); None where ``face_score`` is.
    observed_weight : ndarray float (N,) or None
        Do no harm (``MimicConfig.no_harm``): the observation's share w of each output x + w (y - x), in [0, 1]
        (one value per group); None where it did not run (NaN for images of groups where it did not, e.g. gray
        observations of a colour prior).
    """

    images: np.ndarray
    tensor: torch.Tensor
    mimicked: list
    observed: list
    z: torch.Tensor
    group: np.ndarray
    obs_loss: np.ndarray
    surrogates: list
    history: list
    names: list
    method: str
    task: str
    config: dict
    prior: str
    prior_sha256: dict
    device: str
    seed: int
    seconds: float
    notices: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    retried_groups: list = field(default_factory=list)
    fill: np.ndarray | None = None
    face_score: np.ndarray | None = None
    face_threshold: float | None = None
    observed_weight: np.ndarray | None = None

    @property
    def out_of_prior(self) -> np.ndarray | None:
        if self.face_score is None or self.face_threshold is None:
            return None
        return self.face_score < self.face_threshold

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        ood = self.out_of_prior
        flagged = f", {int(ood.sum())} out of prior" if ood is not None and ood.any() else ""
        return (f"Recovery({len(self)} image(s), {len(self.surrogates)} group(s), task={self.task!r}, "
                f"method={self.method!r}, prior={self.prior!r}, device={self.device!r}{flagged}, "
                f"{self.seconds:.1f} s)")

    def save(self, folder) -> Path:
        """Write the CLI's layout into ``folder``: recovered/ and mimicked/ PNGs named after the inputs (``image_i``
        for arrays), report.json. Returns the folder."""
        from .io import save_json, save_png

        folder = Path(folder)
        stems = [_stem(n, i) for i, n in enumerate(self.names)]
        for i, s in enumerate(stems):
            save_png(folder / "mimicked" / f"{s}.png", self.mimicked[i])
            save_png(folder / "recovered" / f"{s}.png", self.images[i])
        save_json(folder / "report.json", {
            "settings": {"task": self.task, "method": self.method, "prior": self.prior,
                         "prior_sha256": self.prior_sha256, "schedule": self.config, "seed": self.seed,
                         "device": self.device},
            "images": [{"stem": s, "input": n, "group": int(g), "obs_loss": float(o), "fill": float(f),
                        **_ood_fields(self, i), **observed_weight_field(self.observed_weight, i)}
                       for i, (s, n, g, o, f) in enumerate(zip(stems, self.names, self.group, self.obs_loss,
                                                               self.fill))]})
        return folder


def observed_weight_field(weights: np.ndarray | None, i: int) -> dict:
    """The do-no-harm field of image ``i`` in a report (none where do-no-harm did not run: NaN in ``weights``)."""
    return {} if weights is None or not np.isfinite(weights[i]) else {"observed_weight": float(weights[i])}


def _ood_fields(r: Recovery, i: int) -> dict:
    """The out-of-prior fields of image ``i`` in a report (none where no score was computed)."""
    if r.face_score is None or r.face_threshold is None:
        return {}
    return {"face_score": float(r.face_score[i]), "out_of_prior": bool(r.face_score[i] < r.face_threshold)}


def out_of_prior_notice(n_flagged: int, n: int, threshold: float) -> str:
    """The notice for recoveries whose observations do not look like what the prior covers."""
    return (f"{n_flagged} of {n} image(s) have a face score below {threshold:.2f}: the prior may have made up a face "
            "for them; are they 64x64 aligned faces? (mimic.ood)")


def _stem(name: str, i: int) -> str:
    if name.startswith("image[") and name.endswith("]"):
        return f"image_{i}"
    return Path(name).stem


def recover(images, *, task: str | Task | MimicConfig | None = None, method: str = "mimic",
            prior: str | Prior | None = None, batch_size: int = 25, device: str = "auto", seed: int = 0,
            strict_size: bool = False, groups_per_call: int | None = None, progress: bool = False,
            names: list | None = None, on_error: str = "raise", callback=None, reconstructor=None,
            trust_unverified: bool = False, **overrides) -> Recovery:
    """Recover clean images from corrupted observations with no knowledge of the corruption.

    Parameters
    ----------
    images : uint8 ndarray (N, H, W) or (N, H, W, C) | list of uint8 arrays or paths | float Tensor (N, C, H, W) in
        [-1, 1] | str or PathLike (one image file, or a folder: its images, recursively, sorted)
    task : str | Task | MimicConfig, optional
        A preset name (``mimic.list_tasks()``); ``None`` is the task-agnostic "blind" preset.
    method : {"mimic", "pgd"}
        MimicGAN, or plain GAN-prior inversion (the surrogate fixed to identity).
    prior : str | Prior, optional
        A shipped prior name (``mimic.list_priors()``), a prior folder, or a loaded ``Prior``; default: the task's.
    batch_size : int
        Observations per group; each group gets its own surrogate.
    device : {"auto", "cpu", "cuda", "cuda:K"}
    seed : int
        With the images' names, seeds each group (its surrogate's initialisation and restarts).
    names : list of str, optional
        One per image (default: the paths, or ``image[i]``).
    on_error : {"raise", "skip"}
        An unreadable path raises (default) or is skipped and listed in ``Recovery.skipped``.
    reconstructor : str | path | Reconstructor, optional
        A trained reconstructor (``mimic train reconstructor``; ``mimic.reconstructor``): every image is recovered
        by its forward pass instead of a test-time optimisation (``method`` becomes ``"reconstructor"``). It is not
        blind: it was trained for one corruption.
    trust_unverified : bool
        Load a prior or reconstructor whose card lists no sha256 for its weights.
    **overrides
        ``MimicConfig`` fields (e.g. ``T=5``, ``warm_steps=100``).
    """
    t0 = time.perf_counter()
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise InputError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    dev = resolve_device(device)
    t = get_task(task)
    cfg = t.config.replace(**overrides) if overrides else t.config
    pr = load_prior(prior if prior is not None else t.prior, device=dev, trust_unverified=trust_unverified)
    method, reconstructor = with_reconstructor(method, reconstructor, dev, trust_unverified)
    cfg, cfg_notices = fit_config(cfg, pr, method)
    prep = prepare(images, resolution=pr.resolution, strict_size=strict_size, names=names)
    prep.notices[:0] = cfg_notices
    if prep.skipped and on_error == "raise":
        name, why = prep.skipped[0]
        raise InputError(f"{name}: {why}")
    if not prep.images:
        raise InputError("no readable images to recover")
    return _recover_prepared(prep, t, cfg, pr, method=method, batch_size=batch_size, device=dev, seed=int(seed),
                             groups_per_call=groups_per_call, progress=progress, callback=callback, t0=t0,
                             reconstructor=reconstructor)


def _recover_prepared(prep: Prepared, t: Task, cfg: MimicConfig, pr: Prior, *, method, batch_size, device, seed,
                      groups_per_call, progress, callback, t0, reconstructor=None) -> Recovery:
    for im, nm in zip(prep.images, prep.names):
        if im.shape[-1] not in (1, pr.channels):
            raise InputError(f"{nm}: {im.shape[-1]}-channel observation cannot be explained by the "
                             f"{pr.channels}-channel prior {pr.name!r}")
    groups = make_groups([im.shape[-1] for im in prep.images], batch_size)
    n = len(prep.images)
    nz = 0 if method == "reconstructor" else pr.nz  # a reconstructor has no latent code
    x_all, z_all = torch.empty(n, pr.channels, pr.resolution, pr.resolution), torch.empty(n, nz)
    loss_all, fill_all, gid = np.empty(n), np.zeros(n), np.empty(n, dtype=np.int64)
    weight_all = None  # do no harm's observed weights, where it ran
    mimicked: list = [None] * n
    surrogates, history, retried = [], [], []
    with _progress(progress, method, n) as advance:
        for gi, r in enumerate(recover_groups(prep.images, prep.names, groups, cfg=cfg, prior=pr, method=method,
                                              device=device, seed=seed, groups_per_call=groups_per_call,
                                              callback=callback, reconstructor=reconstructor)):
            g = r.index
            x_all[g], z_all[g], loss_all[g], fill_all[g], gid[g] = r.tensor, r.z, r.obs_loss, r.fill, gi
            if r.observed_weight is not None:
                weight_all = np.full(n, np.nan) if weight_all is None else weight_all
                weight_all[g] = r.observed_weight
            for j, i in enumerate(g):
                mimicked[i] = r.mimicked[j]
            surrogates.append(r.surrogate)
            history.append(r.history)
            if r.retried:
                retried.append(gi)
            advance(len(g))
    notices = list(prep.notices)
    face, thr = None, (threshold_for(pr) if method == "mimic" else None)
    if thr is not None:
        face = face_score(prep.images, mimicked)
        if (face < thr).any():
            notices.append(out_of_prior_notice(int((face < thr).sum()), n, thr))
    if (fill_all > 0).any():
        notices.append(fill_notice(int((fill_all > 0).sum()), float(fill_all[fill_all > 0].mean())))
    if retried:
        notices.append(f"{len(retried)} group(s) diverged and ran again with a smaller step: {retried}")
    return Recovery(images=to_uint8(x_all), tensor=x_all, mimicked=mimicked, observed=list(prep.images), z=z_all,
                    group=gid, obs_loss=loss_all, surrogates=surrogates, history=history, names=prep.names,
                    method=method, task=t.name, config=asdict(cfg), prior=pr.name, prior_sha256=pr.sha256,
                    device=str(device), seed=seed, seconds=time.perf_counter() - t0, notices=notices,
                    skipped=prep.skipped, retried_groups=retried, fill=fill_all, face_score=face,
                    face_threshold=thr, observed_weight=weight_all)


class _progress:
    """A rich progress bar on stderr (or nothing); ``with _progress(on, label, total) as advance: advance(k)``."""

    def __init__(self, on: bool, label: str, total: int):
        self.on, self.label, self.total = on, label, total

    def __enter__(self):
        if not self.on:
            return lambda k: None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.prog = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(),
                             TextColumn("{task.completed}/{task.total} images"), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=Console(stderr=True))
        self.prog.__enter__()
        task = self.prog.add_task(self.label, total=self.total)
        return lambda k: self.prog.advance(task, k)

    def __exit__(self, *exc):
        if self.on:
            self.prog.__exit__(*exc)
        return False
