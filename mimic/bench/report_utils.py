"""Shared pieces of the benchmarks and experiments: held-out faces, method names, config overrides, figures."""
from __future__ import annotations

import ast
import json
from dataclasses import asdict

from ..priors.report import heldout_images
from ..tasks import get_task


#: the schedule of a bench's ``quick`` form (a smoke run: every code path, no meaningful figure)
QUICK_SCHEDULE = {"warm_steps": 20, "T": 2, "T1": 5, "T2": 5, "adapt_steps": 5}


def bench_setup(out, prior, device, overrides: dict | None, quick: bool, *, trust_unverified: bool = False,
                **quick_overrides):
    """What every bench starts with: (``out`` as a Path, the resolved device, the prior loaded on it, the MimicConfig
    overrides; for a ``quick`` run the quick schedule and ``quick_overrides`` under the given overrides).
    ``prior`` is a name, a folder (``trust_unverified``: weights its card lists no sha256 for are used) or a loaded
    ``Prior``."""
    from pathlib import Path

    from ..api import resolve_device
    from ..priors import load_prior

    dev = resolve_device(device)
    overrides = dict(overrides or {})
    if quick:
        overrides = {**QUICK_SCHEDULE, **quick_overrides, **overrides}
    return Path(out), dev, load_prior(prior, device=dev, trust_unverified=trust_unverified), overrides


def heldout_test_faces(prior, n: int):
    """The first ``n`` faces of the prior's held-out *test* split (never used for tuning)."""
    return heldout_images(prior, n, which="test")


def validation_faces(n: int, offset: int = 0, *, data=None, size: int = 64, holdout: int = 1000):
    """Faces ``offset .. offset + n`` of the CelebA *validation* split (the first half of the ``holdout`` held-out
    images; what tuning reads, never the test half the benches report), or of the image folder ``data``.

    Returns (uint8 array (n, size, size, 3), a description of where they come from)."""
    from ..data import DataNotFoundError, data_dir, list_images, load_image_folder, split_files

    if data is not None:
        files = list_images(data)[offset : offset + n]
        if not files:
            raise ValueError(f"no images in {data} from offset {offset}")
        return load_image_folder(files, size=size, crop_fraction=1.0), \
            f"{len(files)} images of {data} from offset {offset}"
    root = data_dir("celeba")  # a missing folder: one line naming --data and MIMIC_DATA
    files = list_images(root)
    if len(files) <= holdout:
        raise DataNotFoundError(f"{root}: {len(files)} images, not the {holdout} held out and more; give --data DIR, "
                                "or set MIMIC_DATA to the folder that holds celeba/")
    files = split_files(files, holdout=holdout).val[offset : offset + n]
    if not files:
        raise ValueError(f"the validation split has no faces from offset {offset}")
    return load_image_folder(files, size=size), f"validation split, {len(files)} faces from offset {offset}"


def parse_overrides(text: str) -> dict:
    """``"lr_s=1e-2,inits=('identity',)"`` -> ``{"lr_s": 0.01, "inits": ("identity",)}``: MimicConfig overrides
    written as the keyword arguments of a call (values are Python literals; commas inside them are fine)."""
    call = ast.parse(f"f({text})", mode="eval").body
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def prior_weights(sha256: dict) -> dict:
    """A prior's sha256 of its weight files only (its other files, such as ``group_stats.json``, enter a preset's
    group term only, like the preset's other settings, which a re-run of the methods they touch refreshes)."""
    return {f: h for f, h in sha256.items() if f.endswith(".safetensors")}


def earlier_run(path, same: dict, *, key: str = "settings", missing: dict | None = None,
                prior_sha256: dict | None = None) -> dict | None:
    """The JSON of an earlier bench run at ``path`` if its settings (the dict under ``key``) equal ``same`` on every
    key of ``same``, else None (no file, other settings, or not a bench result). A key of ``same`` that the earlier
    run did not record takes its value in ``missing`` (settings added to a bench after a run was committed). With
    ``prior_sha256`` (this run's prior's checksums), the earlier run must also have used the same prior weights
    (``prior_weights``; a prior file added since, such as ``group_stats.json``, does not discard its rows). Its
    rows get the run's device where they lack one."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return None
    missing = missing or {}
    try:
        old = json.loads(path.read_text())
        st = old[key]
        differ = [k for k, v in same.items() if st.get(k, missing.get(k)) != v]
        if prior_sha256 is not None and prior_weights(st.get("prior_sha256") or {}) != prior_weights(prior_sha256):
            differ.append("prior weights")
        if differ:  # said once, so that a table that loses its earlier rows does not do so silently
            import sys

            print(f"note: {path} holds a run with other settings ({', '.join(differ)}): its rows are not kept",
                  file=sys.stderr)
            return None
        for r in old["results"]:  # rows of runs before rows recorded their device: the run's device
            r.setdefault("device", st["device"])
        return old
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def save_samples(path, arrays: dict) -> None:
    """Sample images of a bench run (name -> uint8 array), written atomically as one compressed .npz."""
    import io

    import numpy as np

    from ..io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_samples(path) -> dict:
    """The arrays ``save_samples`` wrote to ``path`` (name -> array), or {} when there is no such file."""
    from pathlib import Path

    import numpy as np

    if not Path(path).exists():
        return {}
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def method_overrides(method: str, overrides: dict, task: str | None = None) -> tuple[str, dict]:
    """A bench method name (``"pgd"``, ``"mimic"``, ``"blind"``, ``"oracle"``, ``"pgd_rK"`` / ``"mimic_rK"`` with K
    random restarts, ``"pgd_adapt"``, ``"mimic_adapt"``, ``"blind_adapt"``, ``"oracle_adapt"``: with the generator
    adaptation and do-no-harm of ``mimic.tasks.ADAPT``) -> (the recovery method, the overrides to recover with).
    ``task`` is the preset a ``mimic`` row runs (``blind`` rows run the blind preset). Rows without ``_adapt`` are
    plain where their preset is: ``pgd``, ``oracle`` and presets without adaptation get none, whatever the overrides
    say (a quick run's short adaptation only shortens one that is on); an ``_adapt`` row takes ``ADAPT`` under the
    overrides' own adaptation fields (``--adapt-steps``, a quick run's)."""
    from ..tasks import ADAPT, get_task

    adapt = method.endswith("_adapt")
    base, _, rk = method.removesuffix("_adapt").partition("_r")
    if adapt:
        extra = {**ADAPT, **{k: v for k, v in overrides.items() if k in ADAPT}}
    elif base in ("pgd", "oracle") or not get_task(None if base == "blind" else task).config.adapt_steps:
        extra = {"adapt_steps": 0}
    else:
        extra = {}
    return base, {**overrides, **({"restarts": int(rk)} if rk else {}), **extra}


def config_json(task: str | None, overrides: dict) -> dict:
    """A task preset's config with ``overrides``, as JSON values (tuples become lists): what a result was made with."""
    return json.loads(json.dumps(asdict(get_task(task).config.replace(**overrides)), default=str))


def old_ssim_mark(row: dict) -> str:
    """``"†"`` for a row whose SSIM predates :data:`mimic.metrics.SSIM_SETTINGS` (it records no ``ssim_window``)."""
    return "" if "ssim_window" in row else "†"


def old_ssim_note(rows: list[dict]) -> str:
    """The footnote for :func:`old_ssim_mark`'s rows, or ``""`` when the table has none."""
    if not any(old_ssim_mark(r) for r in rows):
        return ""
    return ("\n† SSIM with scikit-image's default 7x7 uniform window and sample covariances (measured before the "
            "Gaussian window of sigma 1.5 that the benches use now).\n")


def pyplot():
    """matplotlib's pyplot on the Agg backend. matplotlib is the ``bench`` extra: when it is missing, an InputError
    (one line, naming the extra); the benches that draw figures call this before their run, not after it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..inputs import InputError

        raise InputError('this bench draws its figures with matplotlib: pip install "mimicgan[bench]"') from None
    return plt


def save_figure(fig, path) -> None:
    """Save a matplotlib figure atomically (temporary file in the same folder, then a rename) and close it."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
