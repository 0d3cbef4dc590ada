"""`mimic bench speed`: how fast the engine runs.

For each device (CPU, and CUDA when present) and a number of groups S of 25
observations: seconds per warm-start step and per outer iteration (T1 surrogate +
T2 latent steps), the projected time of the default schedule for the whole batch,
images per second, and the speed-up of batching S groups over running the same
algorithm one group at a time in a plain loop.
"""
from __future__ import annotations

import time

import torch

from ..engine import solve
from ..priors import load_prior
from ..api import fit_config
from ..tasks import get_task

__all__ = ["bench_speed"]


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _time_solve(pr, y, cfg, dev, reps=1):
    _sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        solve(pr.G, pr.D, y, cfg, generator=torch.Generator().manual_seed(0), stats=pr.group_stats)
    _sync(dev)
    return (time.perf_counter() - t) / reps


def bench_speed(*, prior="celeba64", task="gray_blur", devices=None, groups=(1, 4), batch=25,
                outer=2, warm=10, full: bool = True, trust_unverified: bool = False) -> list[dict]:
    """Measure (see module docstring); returns one row per (device, S).

    With ``full`` the default schedule is run end to end once per (device, S) and timed (the figure
    reported as ``sec_default_schedule``, ``measured_full``: True); otherwise it is projected from
    the per-step timings.
    """
    devices = devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    base = get_task(task).config
    rows = []
    for d in devices:
        dev = torch.device(d)
        pr = load_prior(prior, device=dev, trust_unverified=trust_unverified)
        base, _ = fit_config(get_task(task).config, pr, "mimic")
        pr.G.to(memory_format=torch.channels_last)
        cobs = get_task(task).corruption and 1 if task == "gray_blur" else 3
        for S in groups:
            y = (torch.rand(S, batch, cobs, pr.resolution, pr.resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dev)
            # warm-up (CUDA kernels, allocator)
            solve(pr.G, pr.D, y, base.replace(warm_steps=2, T=1, T1=2, T2=2), stats=pr.group_stats)
            # single-candidate warm steps (the candidate starts double only the first select_after steps)
            t_warm = _time_solve(pr, y, base.replace(warm_steps=warm, T=0, inits=("identity",)), dev) / warm
            t_outer = (_time_solve(pr, y, base.replace(warm_steps=0, T=outer), dev)) / outer
            if full:
                secs = _time_solve(pr, y, base, dev)
            else:
                secs = (base.warm_steps + base.select_after) * t_warm + base.T * t_outer
            row = {"device": d, "groups": S, "images": S * batch, "sec_per_warm_step": t_warm,
                   "sec_per_outer_iteration": t_outer, "sec_default_schedule": secs, "measured_full": full,
                   "images_per_sec": S * batch / secs, "threads": torch.get_num_threads()}
            if S > 1:
                cfg = base.replace(warm_steps=0, T=outer)
                t_loop = sum(_time_solve(pr, y[s : s + 1], cfg, dev) for s in range(S)) / outer
                row["loop_sec_per_outer_iteration"] = t_loop
                row["speedup_vs_loop"] = t_loop / t_outer
            rows.append(row)
    return rows
