"""Lower precision and compilation on the CPU: does either cut the time of a latent step?

A latent step (G forward for a group of 25 faces, D's logits, the backward pass to z) is most of the default
schedule's time. This script times one step per mode on the shipped prior and prints a table:

- ``fp32``: the engine as it is (eager, float32, G and D in channels-last memory format as ``load_prior`` leaves them);
- ``fp32_contiguous``: G and D in the default (NCHW-contiguous) memory format;
- ``bf16_autocast``: G and D under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (oneDNN's bf16 kernels where
  the build and the CPU have them), the loss in float32;
- ``compiled``: the step's loss function through ``torch.compile`` (inductor), compile time reported apart.

Per mode: seconds per step (median of ``--reps``), speed-up over fp32, and the largest relative difference of the
gradient with respect to z against fp32 (what a precision change does to the step's direction). It also prints
what the CPU reports (torch's CPU capability, whether oneDNN has bf16 support). A mode is worth an end-to-end
run (time and PSNR of the default schedule on validation faces) only when its step is >= 1.3x faster.

    python experiments/cpu_precision.py [--reps 5] [--threads N]
"""
import argparse
import statistics
import time

import torch

from mimic.priors import load_prior


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default="celeba64")
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bf16-reps", type=int, default=2, help="bf16 steps can be very slow where oneDNN has no bf16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"oneDNN bf16 supported {torch.ops.mkldnn._is_mkldnn_bf16_supported()}, threads {torch.get_num_threads()}")
    z0 = torch.rand(a.batch, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def make(mode):
        pr = load_prior(a.prior)
        G, D = pr.G, pr.D
        if mode == "fp32_contiguous":
            G.to(memory_format=torch.contiguous_format)
            D.to(memory_format=torch.contiguous_format)
        ac = mode == "bf16_autocast"

        def loss_fn(z):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
                x = G(z)
                logits = D(x)
            x, logits = x.float(), logits.float()
            return ((x - 0.1) ** 2).sum() - torch.nn.functional.softplus(logits).sum() * 1e-4

        return torch.compile(loss_fn) if mode == "compiled" else loss_fn

    def step(fn):
        z = z0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(z), [z])
        return g

    rows, ref = [], None
    for mode in ("fp32", "fp32_contiguous", "bf16_autocast", "compiled"):
        fn = make(mode)
        t = time.perf_counter()
        g = step(fn)  # warm-up (the compile, for "compiled")
        first = time.perf_counter() - t
        times = []
        for _ in range(a.bf16_reps if mode == "bf16_autocast" else a.reps):
            t = time.perf_counter()
            step(fn)
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        ref = ref if ref is not None else (g, sec)
        rel = float((g - ref[0]).norm() / ref[0].norm())
        rows.append((mode, sec, ref[1] / sec, rel, first))
        print(f"{mode}: {sec:.3f} s/step", flush=True)
    print("\n| mode | s / latent step | speed-up over fp32 | gradient rel. difference | first call (s) |")
    print("| --- | --- | --- | --- | --- |")
    for mode, sec, sp, rel, first in rows:
        print(f"| {mode} | {sec:.3f} | {sp:.2f}x | {rel:.1e} | {first:.1f} |")
    worth = [m for m, _, sp, _, _ in rows if sp >= 1.3 and m != "fp32"]
    print("\nworth an end-to-end run (>= 1.3x):", ", ".join(worth) or "none")


if __name__ == "__main__":
    main()
