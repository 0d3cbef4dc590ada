"""A prior's projection figures under other projection budgets (docs/TUNING.md 12).

    python benchmarks/projection_budget.py --prior fmnist28 --n 200 --variant 'restarts=4' \\
        --variant 'restarts=4,warm_steps=800,T2=80'

Each variant is a set of MimicConfig fields (PGD uses warm_steps + T * T2 latent steps and
``restarts`` starts); prints one JSON line per variant. Uses the prior's held-out
validation images (``--split val``, the default; Fashion-MNIST priors: the first n official
test images); never writes the model card.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tune import parse_variant  # noqa: E402

from mimic.engine import MimicConfig  # noqa: E402
from mimic.priors import load_prior  # noqa: E402
from mimic.priors.report import prior_report, report_classifier  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prior", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--split", default="val", choices=["val", "test"],
                    help="held-out half of a CelebA-style split (Fashion-MNIST: always the official test set)")
    args = ap.parse_args()
    pr = load_prior(args.prior, device=args.device)
    clf = report_classifier(pr, device=args.device)
    for v in args.variant:
        t = time.perf_counter()
        q = prior_report(pr, n=args.n, device=args.device, write_card=False, progress=False, classifier=clf, split=args.split,
                         cfg=MimicConfig(**parse_variant(v)))
        keep = {k: q[k] for k in q if any(s in k for s in ("psnr_mean", "ssim_mean", "accuracy", "steps", "restarts"))}
        print(json.dumps({"variant": v, **keep, "seconds": round(time.perf_counter() - t)}), flush=True)


if __name__ == "__main__":
    main()
