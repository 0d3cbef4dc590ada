"""One folder over many processes: ``torchrun --nproc-per-node N -m mimic recover IN --out OUT``.

Every process (rank) reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as ``torch.distributed.run`` (torchrun) sets
them, joins the process group (``gloo`` on the CPU, ``nccl`` on GPUs) and recovers a disjoint, deterministic share of
the folder's groups: the groups are formed from the sorted file list exactly as one process forms them, and rank r
takes groups r, r + N, r + 2N, ... (a group is never split). Each group's randomness comes from its images' names and
the seed, so the recovered files are the same bytes whatever the number of processes (at the same threads per process:
float rounding depends on how many threads share an operation). The process group is used for
setup (rank 0 takes the folder's lock and checks its settings, the others wait for it) and at the end (a barrier,
then rank 0 writes report.json from every rank's journal); nothing is exchanged while groups run.

Without torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) everything here is a no-op: one process, rank 0 of 1.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .inputs import InputError

__all__ = ["World", "world_from_env", "process_group"]


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that takes the lock and writes the report."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, items: list) -> list:
        """This rank's share of ``items``: every ``size``-th one from position ``rank``."""
        return items[self.rank::self.size]

    def device(self, device: str) -> str:
        """The device a rank uses: ``auto`` and ``cuda`` become ``cuda:LOCAL_RANK`` when GPUs are present (one per
        process on a machine); ``cpu`` and an explicit ``cuda:K`` stay as given."""
        if self.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return device

    # --- collectives (no-ops in one process) ---
    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (a picklable object)."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out


def world_from_env(env=None) -> World:
    """The :class:`World` of this process from torchrun's variables (rank 0 of 1 without them). Malformed values are
    an :class:`~mimic.inputs.InputError` naming the variable."""
    env = os.environ if env is None else env
    vals = {}
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", None)):
        raw = env.get(name, default if default is not None else env.get("RANK", "0"))
        try:
            vals[name] = int(raw)
        except ValueError:
            raise InputError(f"{name}={raw!r}: not an integer (set by torchrun)") from None
    rank, size, local = vals["RANK"], vals["WORLD_SIZE"], vals["LOCAL_RANK"]
    if size < 1 or not 0 <= rank < size or local < 0:
        raise InputError(f"RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local}: need 0 <= RANK < WORLD_SIZE")
    return World(rank=rank, size=size, local_rank=local)


@contextmanager
def process_group(device: str = "auto"):
    """Yield this process's :class:`World`, with the default process group joined when it is one of several (and
    not joined yet): ``nccl`` when the ranks use GPUs, else ``gloo``. A group joined here is left at the end; one
    joined by the caller is left alone (so they nest: ``compare`` runs two folders in one)."""
    world = world_from_env()
    own = False
    if world.distributed and not torch.distributed.is_initialized():
        dev = world.device(device)
        cuda = dev.startswith("cuda")
        if cuda:
            torch.cuda.set_device(torch.device(dev))
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        own = True
    try:
        yield world
    finally:
        if own and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
