"""Shared pieces of the benchmarks: held-out faces, method names, figures."""
from __future__ import annotations

import json
from dataclasses import asdict

from ..priors.report import heldout_images
from ..tasks import get_task


def heldout_test_faces(prior, n: int):
    """The first ``n`` faces of the prior's held-out *test* split (never used for tuning)."""
    return heldout_images(prior, n, which="test")


def earlier_run(path, same: dict) -> dict | None:
    """The JSON of an earlier bench run at ``path`` if its settings equal ``same`` on every key of ``same``, else
    None (no file, other settings, or not a bench result). Its rows get the run's device where they lack one."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
        st = old["settings"]
        if any(st.get(k) != v for k, v in same.items()):
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


def method_overrides(method: str, overrides: dict) -> tuple[str, dict]:
    """A bench method name (``"pgd"``, ``"mimic"``, or ``"pgd_rK"`` / ``"mimic_rK"`` with K random restarts) ->
    (the recovery method, the overrides to recover with)."""
    base, _, rk = method.partition("_r")
    return base, {**overrides, **({"restarts": int(rk)} if rk else {})}


def config_json(task: str | None, overrides: dict) -> dict:
    """A task preset's config with ``overrides``, as JSON values (tuples become lists): what a result was made with."""
    return json.loads(json.dumps(asdict(get_task(task).config.replace(**overrides)), default=str))


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is missing (figures are optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
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
