"""Folder jobs behind the CLI: recover, compare and corrupt whole folders.

Guarantees:

- nothing is written inside the input folder; every output file is written atomically;
- one pass: every input is read once, when its group is about to run (memory stays flat with the folder's size);
  metrics and the grid come from the arrays in memory;
- groups are formed from the sorted file list (at most ``batch_size`` images, never mixing channel counts), and
  each group's randomness comes from its images' names and the seed: a resumed run gives the bytes an
  uninterrupted one gives;
- ``OUT/journal.jsonl`` gets one line per finished group, appended and flushed after the group's files are in
  place; ``report.json`` is rebuilt from the journal at the end of every run, so after ``kill -9`` at any moment
  the same command finishes the rest and reports every image exactly once;
- ``OUT/settings.json`` records what made the outputs; a run with other settings into the same OUT is refused
  (``--overwrite`` redoes everything); ``OUT/.lock`` (the holder's pid) refuses a second concurrent run;
- unreadable files are reported by name and skipped (exit code 1 at the end);
- a MimicGAN recovery with a prior whose out-of-prior threshold was measured (``mimic.ood.threshold_for``:
  ``celeba64``) gets each image's ``face_score`` and ``out_of_prior`` flag in the journal and ``report.json``, and
  ``FolderResult.out_of_prior`` lists the flagged images (the CLI warns about each on stderr).
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .api import (fill_notice, fit_config, make_groups, observed_weight_field, recover_groups, resolve_device,
                  with_reconstructor)
from .corruptions import get_corruption
from .distributed import World, process_group
from .inputs import InputError, folder_notices, input_notices, prepare, scan_folder
from .io import ImageReadError, labeled_grid, read_image, save_json, save_png, to_tensor, to_uint8
from .metrics import psnr, ssim
from .ood import face_score, threshold_for
from .priors import load_prior
from .tasks import get_task

__all__ = ["recover_folder", "compare_folder", "corrupt_folder", "FolderResult", "check_out_dir"]

GRID_N = 8  # images shown in grid.png


@dataclass
class FolderResult:
    out: Path
    done: int = 0  # recovered in this run
    resumed: int = 0  # already present, skipped
    skipped: list = field(default_factory=list)  # (file, reason)
    notices: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    preview: dict = field(default_factory=dict)  # stem -> {"observed", "mimicked", "recovered", "clean"} arrays
    face_threshold: float | None = None  # the out-of-prior threshold (None: no face score for this prior or method)
    out_of_prior: list = field(default_factory=list)  # (input, face score) of the report's flagged images
    rank: int = 0  # under torchrun: this process's rank (0 holds the whole folder's figures)


def check_out_dir(inp: Path, out: Path) -> None:
    """Refuse an output folder equal to or inside the input folder."""
    i, o = Path(inp).resolve(), Path(out).resolve()
    if o == i or i in o.parents:
        raise InputError(f"{out}: the output folder must not be the input folder or inside it")


def _check_writable(out: Path) -> None:
    """Create OUT and prove that a file can be written there (before any compute)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"{out}: output folder not writable ({e.strerror or type(e).__name__})") from None


def _rel_stem(p: Path, root: Path) -> str:
    return p.relative_to(root).with_suffix("").as_posix()


class FolderLock:
    """``OUT/.lock`` holding the pid and host of the run that writes OUT; a lock whose process is gone is stale."""

    def __init__(self, out: Path):
        self.path = out / ".lock"
        self.held = False

    def __enter__(self):
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == me["host"] and other.get("pid") and not _alive(other["pid"]):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise InputError(f"{self.path.parent}: in use by another run (pid {other.get('pid', '?')} on "
                                 f"{other.get('host', '?')}; remove {self.path} if that run is gone)") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise InputError(f"{self.path}: could not take the lock")

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


class Journal:
    """``OUT/journal.jsonl`` (``journal.R.jsonl`` for rank R of several processes): one JSON line per finished group
    (its images' records), appended and fsynced; a torn last line (a kill mid-write) is ignored. ``records()`` reads
    every journal in OUT, whatever process wrote it, and maps stem -> its latest record."""

    def __init__(self, out: Path, world: World | None = None):
        world = world or World()
        self.out = out
        self.path = out / ("journal.jsonl" if not world.distributed else f"journal.{world.rank}.jsonl")

    def _files(self) -> list:
        files = [p for p in self.out.glob("journal*.jsonl") if p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))  # the latest writes last

    def records(self) -> dict:
        recs = {}
        for path in self._files():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # torn line
                for r in entry.get("images", []):
                    recs[r["stem"]] = r
        return recs

    def append(self, records: list) -> None:
        line = json.dumps({"images": records}) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def clear(self) -> None:
        for p in self._files():
            p.unlink(missing_ok=True)


def _decodes(p: Path) -> bool:
    try:
        read_image(p)
        return True
    except (ImageReadError, OSError):
        return False


def _peek_channels(p: Path) -> int:
    """Observation channels of an image file from its header (1 gray, 3 colour; alpha is dropped), without decoding."""
    from PIL import Image

    with Image.open(p) as im:
        return 1 if im.mode in ("L", "1", "F") or im.mode.startswith("I") else 3


def _settings(t, method, pr, cfg, batch_size, seed, inp, rc=None) -> dict:
    """What determines the outputs: a resumed run must have the same."""
    out = {"task": t.name, "method": method, "prior": pr.name, "prior_sha256": pr.sha256, "schedule": asdict(cfg),
           "batch_size": batch_size, "seed": seed, "input": str(Path(inp).resolve())}
    if rc is not None:  # a trained reconstructor: the network, not the prior and the schedule, makes the outputs
        out["reconstructor"] = {"name": rc.name, "path": rc.path, "sha256": rc.sha256}
    return out


def _check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    path = out / "settings.json"
    if overwrite or not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"{path}: damaged ({e}); use --overwrite to redo the folder") from None
    diff = [k for k in settings if json.dumps(old.get(k), sort_keys=True) != json.dumps(settings[k], sort_keys=True)]
    if diff:
        show = ", ".join(f"{k} {old.get(k)!r} -> {settings[k]!r}" for k in diff if k != "schedule")
        if "schedule" in diff:
            sk = [k for k in settings["schedule"] if old.get("schedule", {}).get(k) != settings["schedule"][k]]
            show = ", ".join(filter(None, [show, "schedule " + ", ".join(
                f"{k} {old.get('schedule', {}).get(k)!r} -> {settings['schedule'][k]!r}" for k in sk)]))
        raise InputError(f"{out}: made with other settings ({show}); use --overwrite to redo it or another --out")


def _load_clean(clean_files: dict, stem: str, resolution: int):
    p = clean_files.get(stem)
    if p is None:
        return None
    try:
        return prepare([read_image(p)], resolution=resolution, names=[str(p)]).images[0]
    except (ImageReadError, InputError):
        return None


def recover_folder(inp, out, *, task=None, method: str = "mimic", prior=None, batch_size: int = 25,
                   device: str = "auto", seed: int = 0, clean=None, strict_size: bool = False,
                   overwrite: bool = False, progress: bool = True, groups_per_call: int | None = None,
                   trust_unverified: bool = False, reconstructor=None, **overrides) -> FolderResult:
    """Recover every image of ``inp`` into ``out`` (layout: recovered/, mimicked/ (not for PGD), journal.jsonl,
    settings.json, report.json, grid.png).

    ``reconstructor``: a trained reconstructor (name, folder or ``Reconstructor``) recovers every image in one
    forward pass instead (``method`` becomes ``"reconstructor"``; ``mimic.reconstructor``).

    Under torchrun (``mimic.distributed``) every process recovers its share of the groups; rank 0 returns the whole
    folder's result (counts summed over the ranks, report.json written), the other ranks their own counts."""
    with process_group(device) as world:
        return _recover_folder(world, inp, out, task=task, method=method, prior=prior, batch_size=batch_size,
                               device=device, seed=seed, clean=clean, strict_size=strict_size, overwrite=overwrite,
                               progress=progress, groups_per_call=groups_per_call,
                               trust_unverified=trust_unverified, reconstructor=reconstructor, **overrides)


def _recover_folder(world: World, inp, out, *, task, method, prior, batch_size, device, seed, clean, strict_size,
                    overwrite, progress, groups_per_call, trust_unverified, reconstructor=None,
                    **overrides) -> FolderResult:
    inp, out = Path(inp), Path(out)
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    files = scan_folder(inp)
    check_out_dir(inp, out)
    clean_files = {}
    if clean is not None:  # before any compute: a wrong path must not cost the run
        clean = Path(clean)
        for p in scan_folder(clean):
            clean_files.setdefault(_rel_stem(p, clean), p)
    dev = resolve_device(world.device(device))
    t = get_task(task)
    cfg = t.config.replace(**overrides) if overrides else t.config
    pr = load_prior(prior if prior is not None else t.prior, device=dev, trust_unverified=trust_unverified)
    method, reconstructor = with_reconstructor(method, reconstructor, dev, trust_unverified)
    cfg, cfg_notices = fit_config(cfg, pr, method)
    _check_writable(out)
    res = FolderResult(out=out, rank=world.rank, notices=cfg_notices + folder_notices(inp),
                       face_threshold=threshold_for(pr) if method == "mimic" else None)
    # one output per stem: a.png and a.jpg would overwrite each other's outputs
    seen, stems = {}, []
    for p in files:
        s = _rel_stem(p, inp)
        if s in seen:
            res.skipped.append((str(p), f"same name as {seen[s].name}; outputs would collide"))
            continue
        chans = None
        try:
            chans = _peek_channels(p)
        except Exception as e:  # noqa: BLE001  (any header the reader refuses: reported below like the others)
            try:
                read_image(p)
            except ImageReadError as err:
                res.skipped.append((str(p), str(err).split(": ", 1)[-1]))
                continue
            res.skipped.append((str(p), f"not a readable image ({type(e).__name__})"))
            continue
        seen[s] = (p, chans)
        stems.append(s)
    settings = _settings(t, method, pr, cfg, batch_size, seed, inp, reconstructor)
    n_scan_skipped = len(res.skipped)  # found by every rank alike; later ones only by the rank that read the file
    t_start = time.perf_counter()
    with ExitStack() as stack:
        journal = Journal(out, world)
        err = None
        if world.main:  # one lock for all the ranks, taken and checked by rank 0 while the others wait
            try:
                stack.enter_context(FolderLock(out))
                _check_settings(out, settings, overwrite)
                if overwrite:
                    journal.clear()
                save_json(out / "settings.json", {**settings, "version": __version__, "world_size": world.size})
            except InputError as e:
                err = e
        msg = world.broadcast(None if err is None else str(err))
        if err is not None:
            raise err
        if msg is not None:
            raise InputError(msg)
        recs = journal.records()
        groups = [[stems[i] for i in g] for g in make_groups([seen[s][1] for s in stems], batch_size)]
        groups = world.shard(groups)  # this rank's groups (all of them in one process)
        done = {s for g in groups for s in g if s in recs and _decodes(out / "recovered" / f"{s}.png")}
        res.resumed = len(done)
        todo = [[s for s in g if s not in done] for g in groups]
        todo = [g for g in todo if g]
        first = set(stems[:GRID_N])
        retried, counts = [], {"alpha": 0, "resized": 0}
        from .api import _progress

        with _progress(progress and world.main, method, sum(len(g) for g in todo)) as advance:
            for g in todo:
                prep = prepare([seen[s][0] for s in g], resolution=pr.resolution, strict_size=strict_size,
                               names=[str(seen[s][0]) for s in g])
                res.skipped += prep.skipped
                counts = {k: counts[k] + prep.counts.get(k, 0) for k in counts}
                ok = [s for s in g if str(seen[s][0]) in set(prep.names)]
                if not ok:
                    continue
                for im, nm in zip(prep.images, prep.names):
                    if im.shape[-1] not in (1, pr.channels):
                        raise InputError(f"{nm}: {im.shape[-1]}-channel observation cannot be explained by the "
                                         f"{pr.channels}-channel prior {pr.name!r}")
                (r,) = recover_groups(prep.images, ok, [list(range(len(ok)))], cfg=cfg, prior=pr, method=method,
                                      device=dev, seed=seed, groups_per_call=1, reconstructor=reconstructor)
                records = []
                scores = face_score(prep.images, r.mimicked) if res.face_threshold is not None else None
                for j, s in enumerate(ok):
                    if method != "pgd":  # PGD has no surrogate: its f(x) is x
                        save_png(out / "mimicked" / f"{s}.png", r.mimicked[j])
                    save_png(out / "recovered" / f"{s}.png", r.images[j])
                    rec = {"stem": s, "input": str(seen[s][0]), "group": ok[0], "obs_loss": float(r.obs_loss[j]),
                           "fill": float(r.fill[j]), **observed_weight_field(r.observed_weight, j)}
                    if scores is not None:
                        rec["face_score"] = float(scores[j])
                        rec["out_of_prior"] = bool(scores[j] < res.face_threshold)
                    cl = _load_clean(clean_files, s, pr.resolution) if clean_files else None
                    if cl is not None:
                        rec["psnr"] = float(psnr(r.images[j][None], cl[None])[0])
                        rec["ssim"] = float(ssim(r.images[j][None], cl[None])[0])
                    records.append(rec)
                    if s in first:
                        res.preview[s] = {"observed": prep.images[j], "mimicked": r.mimicked[j],
                                          "recovered": r.images[j], "clean": cl}
                journal.append(records)
                if r.retried:
                    retried.append(ok[0])
                res.done += len(ok)
                advance(len(g))
        # the end: every rank's counts to rank 0 (also the barrier before the report reads every journal)
        parts = world.gather({"done": res.done, "resumed": res.resumed, "skipped": res.skipped[n_scan_skipped:],
                              "counts": counts, "retried": retried})
        if not world.main:
            return res
        res.done, res.resumed = sum(p["done"] for p in parts), sum(p["resumed"] for p in parts)
        res.skipped = res.skipped[:n_scan_skipped] + [x for p in parts for x in p["skipped"]]
        counts = {k: sum(p["counts"][k] for p in parts) for k in counts}
        retried = sorted(x for p in parts for x in p["retried"])
        if res.resumed:
            res.notices.append(f"resuming: {res.resumed} image(s) already recovered in {out / 'recovered'} "
                               "(use --overwrite to redo)")
        res.notices += input_notices(counts, pr.resolution)
        res.report = _report(out, journal.records(), stems, clean_files, pr.resolution,
                             {**settings, "device": str(dev), "clean": str(clean) if clean else None}, res,
                             time.perf_counter() - t_start)
        if retried:
            res.notices.append(f"{len(retried)} group(s) diverged and ran again with a smaller step "
                               f"(groups starting at {', '.join(retried)})")
        res.out_of_prior = [(r["input"], r["face_score"]) for r in res.report["images"] if r.get("out_of_prior")]
        filled = [r["fill"] for r in res.report["images"] if r.get("fill", 0) > 0]
        if filled:
            res.notices.append(fill_notice(len(filled), float(np.mean(filled))))
        _fill_preview(res, out, stems[:GRID_N], seen, clean_files, pr.resolution, method)
        if res.preview:
            save_png(out / "grid.png", _grid(res.preview, stems[:GRID_N], method))
    return res


def _report(out, recs, stems, clean_files, resolution, settings, res, seconds) -> dict:
    """report.json from the journal: every image of the folder that has an output, once, in file order."""
    rows = []
    for s in stems:
        if s not in recs:
            continue
        r = dict(recs[s])
        if clean_files and "psnr" not in r:  # recovered by an earlier run without --clean
            cl = _load_clean(clean_files, s, resolution)
            if cl is not None:
                im = read_image(out / "recovered" / f"{s}.png")
                r["psnr"], r["ssim"] = float(psnr(im[None], cl[None])[0]), float(ssim(im[None], cl[None])[0])
        rows.append(r)
    if clean_files:
        missing = [r["stem"] for r in rows if "psnr" not in r]
        if missing:
            res.notices.append(f"no clean reference for {len(missing)} image(s)")
        ps = [r["psnr"] for r in rows if "psnr" in r]
        if ps:
            res.metrics = {"n": len(ps), "psnr_mean": float(np.mean(ps)),
                           "ssim_mean": float(np.mean([r["ssim"] for r in rows if "ssim" in r]))}
    report = {
        "version": __version__,
        "settings": settings,
        "timing": {"seconds_this_run": seconds, "images_this_run": res.done,
                   "images_per_second": res.done / max(seconds, 1e-9)},
        "metrics": res.metrics,
        "skipped": [{"input": a, "reason": b} for a, b in res.skipped],
        # images whose observation does not look like what the prior covers (mimic.ood); None: not scored
        "out_of_prior": None if res.face_threshold is None else {
            "threshold": res.face_threshold, "n": sum(bool(r.get("out_of_prior")) for r in rows),
            "images": [r["stem"] for r in rows if r.get("out_of_prior")]},
        "images": rows,
    }
    save_json(out / "report.json", report)
    return report


def _fill_preview(res, out, first, seen, clean_files, resolution, method) -> None:
    """The grid's images that were not computed in this run (resumed ones), read from OUT and the input."""
    for s in first:
        if s in res.preview or not (out / "recovered" / f"{s}.png").exists():
            continue
        try:
            obs = prepare([read_image(seen[s][0])], resolution=resolution).images[0]
            mim = out / "mimicked" / f"{s}.png"
            res.preview[s] = {"observed": obs, "recovered": read_image(out / "recovered" / f"{s}.png"),
                              "mimicked": read_image(mim) if method != "pgd" and mim.exists() else None,
                              "clean": _load_clean(clean_files, s, resolution) if clean_files else None}
        except (ImageReadError, InputError):
            continue


def _caption(im, cl):
    return f"{float(psnr(im[None], cl[None])[0]):.1f} dB" if cl is not None else ""


def _grid(preview: dict, first: list, method: str, pgd: dict | None = None) -> np.ndarray:
    """A labelled grid: observed, f(x), the recovery (and PGD's), clean; PSNR under each recovery with clean."""
    stems = [s for s in first if s in preview]

    def rgb(a):
        return np.repeat(a, 3, -1) if a.shape[-1] == 1 else a

    rows, labels, caps = [], [], []
    cl = [preview[s]["clean"] for s in stems]
    rows.append(np.stack([rgb(preview[s]["observed"]) for s in stems]))
    labels.append("observed")
    caps.append([_caption(preview[s]["observed"], c) for s, c in zip(stems, cl)])
    if method != "pgd" and all(preview[s]["mimicked"] is not None for s in stems):
        rows.append(np.stack([rgb(preview[s]["mimicked"]) for s in stems]))
        labels.append("f(x)")
        caps.append([])
    rows.append(np.stack([rgb(preview[s]["recovered"]) for s in stems]))
    labels.append({"mimic": "MimicGAN", "pgd": "PGD"}.get(method, method))
    caps.append([_caption(preview[s]["recovered"], c) for s, c in zip(stems, cl)])
    if pgd is not None and all(s in pgd for s in stems):
        rows.append(np.stack([rgb(pgd[s]["recovered"]) for s in stems]))
        labels.append("PGD")
        caps.append([_caption(pgd[s]["recovered"], c) for s, c in zip(stems, cl)])
    if all(c is not None for c in cl):
        rows.append(np.stack([rgb(c) for c in cl]))
        labels.append("clean")
        caps.append([])
    return labeled_grid(rows, row_labels=labels, captions=caps if any(caps) else None)


def compare_folder(inp, out, *, task=None, clean=None, progress=True, **kw) -> dict:
    """Run MimicGAN and PGD on the same observations: ``out/mimic``, ``out/pgd``, ``grid.png``, ``metrics.json``.
    PGD is plain GAN inversion with the task's settings: the blind preset's generator adaptation only where
    ``adapt_steps`` is given."""
    inp, out = Path(inp), Path(out)
    check_out_dir(inp, out)
    with process_group(kw.get("device", "auto")) as world:  # under torchrun: both folders by every rank, one group joined
        r_m = recover_folder(inp, out / "mimic", task=task, method="mimic", clean=clean, progress=progress, **kw)
        # the baseline is plain GAN inversion: no generator adaptation unless asked for (--adapt-steps)
        r_p = recover_folder(inp, out / "pgd", task=task, method="pgd", clean=clean, progress=progress,
                             **{"adapt_steps": 0, **kw})
    if not world.main:  # rank 0 writes the comparison
        return {"mimic": r_m, "pgd": r_p, "metrics": {}}
    metrics = {"task": get_task(task).name, "mimic": r_m.metrics, "pgd": r_p.metrics}
    if r_m.metrics and r_p.metrics:
        metrics["gain_psnr_db"] = r_m.metrics["psnr_mean"] - r_p.metrics["psnr_mean"]
        metrics["gain_ssim"] = r_m.metrics["ssim_mean"] - r_p.metrics["ssim_mean"]
    pim = {r["stem"]: r for r in r_p.report["images"]}
    if r_m.face_threshold is not None:
        metrics["out_of_prior"] = len(r_m.out_of_prior)
    metrics["images"] = [{"stem": r["stem"], **{f"mimic_{k}": r[k] for k in ("psnr", "ssim", "obs_loss", "face_score",
                                                                            "out_of_prior") if k in r},
                          **{f"pgd_{k}": pim[r["stem"]][k] for k in ("psnr", "ssim", "obs_loss")
                             if k in pim.get(r["stem"], {})}}
                         for r in r_m.report["images"]]
    save_json(out / "metrics.json", metrics)
    first = [r["stem"] for r in r_m.report["images"]][:GRID_N]
    if r_m.preview:
        save_png(out / "grid.png", _grid(r_m.preview, first, "mimic", pgd=r_p.preview))
    return {"mimic": r_m, "pgd": r_p, "metrics": metrics}


def corrupt_folder(inp, out, *, task: str, seed: int = 0, resolution: int | None = None, strict_size: bool = False,
                   overwrite: bool = False) -> FolderResult:
    """Apply a registered corruption (a task's, or a corruption name) to every image of ``inp``.

    Writes ``out/<stem>.png`` (the observation) and ``out/corruption.json``. The noise is drawn from one generator
    seeded by ``seed``, images in sorted order, 256 at a time (a batch-shared pattern, as in stuck_pixels, is shared
    by each block of 256).
    """
    from .tasks import TASKS

    inp, out = Path(inp), Path(out)
    files = scan_folder(inp)
    check_out_dir(inp, out)
    name = TASKS[task].corruption if task in TASKS and TASKS[task].corruption else task
    corr = get_corruption(name)
    gray = corr.domain == "fmnist"  # Fashion-MNIST corruptions work on 28x28 gray images
    resolution = resolution or (28 if gray else 64)
    _check_writable(out)
    res = FolderResult(out=out)
    prep = prepare([str(p) for p in files], resolution=resolution, strict_size=strict_size,
                   names=[str(p) for p in files])
    res.skipped, res.notices = prep.skipped, prep.notices
    byname = {str(p): p for p in files}
    batch, stems = [], []
    for im, nm in zip(prep.images, prep.names):
        s = _rel_stem(byname[nm], inp)
        if not overwrite and (out / f"{s}.png").exists():
            res.resumed += 1
            continue
        if gray and im.shape[-1] == 3:
            im = np.round(im.astype(np.float32).mean(-1, keepdims=True)).astype(np.uint8)
        elif not gray and im.shape[-1] == 1:
            im = np.repeat(im, 3, -1)
        batch.append(im)
        stems.append(s)
    # one generator for the whole folder, as the paper's batch-shared noise patterns need
    gen = torch.Generator().manual_seed(seed)
    for k in range(0, len(batch), 256):
        x = to_tensor(np.stack(batch[k : k + 256]))
        y = to_uint8(corr(x, generator=gen))
        for j, s in enumerate(stems[k : k + 256]):
            save_png(out / f"{s}.png", y[j])
            res.done += 1
    save_json(out / "corruption.json", {"corruption": corr.name, "params": corr.params(), "seed": seed,
                                        "source": str(inp), "version": __version__})
    return res
