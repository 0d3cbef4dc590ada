"""Held-out faces for benchmarks."""
from __future__ import annotations

from ..priors.report import heldout_images


def heldout_test_faces(prior, n: int):
    """The first ``n`` faces of the prior's held-out *test* split (never used for tuning)."""
    return heldout_images(prior, n, which="test")
