"""Tuning harness for the Fashion-MNIST tasks, on test images OUTSIDE the 500 that
`mimic bench classify` reports (a validation set of its own).

    python benchmarks/tune_fmnist.py --task binarize --n 100 --variant '' --variant 'lr_s=1e-2'
    python benchmarks/tune_fmnist.py --task clean --task attack:deepfool --variant 'inits=("identity",)'

``clean`` and ``attack:NAME`` (an attack of `mimic bench defense`) are recovered with the
``adversarial`` preset and the defense bench's batches of 100; PGD there is Defense-GAN.

Prints the classifier's accuracy on the observations, PGD and each MimicGAN variant.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tune import parse_variant  # noqa: E402

from mimic.api import recover  # noqa: E402
from mimic.bench.classify import fmnist_test_subset, predict  # noqa: E402
from mimic.corruptions import get_corruption  # noqa: E402
from mimic.data import default_data_root, load_fmnist  # noqa: E402
from mimic.io import to_tensor  # noqa: E402
from mimic.priors import load_classifier  # noqa: E402
from mimic.tasks import TASKS  # noqa: E402


def val_images(n: int, seed: int = 123):
    x, y = load_fmnist(default_data_root() / "fashion-mnist", "test")
    _, _, bench_idx = fmnist_test_subset(515, seed=0)  # the bench's 500 (+15 for the universal perturbation)
    rest = np.setdiff1d(np.arange(len(x)), bench_idx)
    idx = np.sort(np.random.default_rng(seed).choice(rest, n, replace=False))
    return x[idx], y[idx]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prior", default="fmnist28")
    ap.add_argument("--task", action="append", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--pgd", default="")
    ap.add_argument("--no-pgd", action="store_true")
    ap.add_argument("--oracle", action="store_true", help="also PGD through the true corruption (bench blind's oracle)")
    ap.add_argument("--seed", type=int, default=123, help="draws the validation images (123: items 19, 20)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    xu8, labels = val_images(args.n, seed=args.seed)
    clean = to_tensor(xu8)
    clf = load_classifier()
    for task in args.task:
        preset, bs = task, 25
        if task == "clean" or task.startswith("attack:"):
            preset, bs = "adversarial", 100
            y = clean
            if task != "clean":
                from mimic.bench.defense import ATTACKS, _art_classifier, _attack

                a = task.split(":", 1)[1]
                est = _art_classifier(clf, torch.device("cpu"))
                y = torch.from_numpy(_attack(a, est, clean.numpy(), labels, ATTACKS[a]))
        else:
            y = get_corruption(task)(clean, generator=torch.Generator().manual_seed(0))
        res = {"task": task, "observed": float((predict(clf, y, "cpu") == labels).mean() * 100)}
        if args.oracle and task in TASKS and TASKS[task].corruption:
            from mimic.bench.blind import _oracle
            from mimic.io import to_uint8
            from mimic.priors import load_prior

            t0 = time.time()
            rec = _oracle(load_prior(args.prior, device="cpu"), task, to_uint8(y), "cpu", bs, 0)
            res["oracle"] = float((predict(clf, to_tensor(rec), "cpu") == labels).mean() * 100)
            res["oracle_s"] = round(time.time() - t0)
        runs = ([] if args.no_pgd else [("pgd", "pgd", args.pgd)]) + [(f"mimic[{v}]", "mimic", v) for v in args.variant or [""]]
        for name, method, v in runs:
            t0 = time.time()
            r = recover(y, task=preset, method=method, prior=args.prior, device="cpu", batch_size=bs, **parse_variant(v))
            ok = predict(clf, r.tensor, "cpu") == labels
            res[name] = float(ok.mean() * 100)
            res[name + "_s"] = round(time.time() - t0)
            if name == "pgd":
                pgd_ok = ok
            elif not args.no_pgd:  # paired against PGD: images only this variant gets right / only PGD does
                res[name + "_vs_pgd"] = [int((ok & ~pgd_ok).sum()), int((~ok & pgd_ok).sum())]
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
