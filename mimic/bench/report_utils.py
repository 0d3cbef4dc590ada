"""Held-out faces for benchmarks."""
from __future__ import annotations

from ..priors.report import heldout_images


def heldout_test_faces(prior, n: int):
    """The first ``n`` faces of the prior's held-out *test* split (never used for tuning)."""
    return heldout_images(prior, n, which="test")


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
