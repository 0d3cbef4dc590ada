"""Pretrained priors: registry, loading with checksums, and the ``Prior`` bundle.

A prior folder holds ``generator.safetensors``, ``discriminator.safetensors``,
``config.json`` (architecture) and ``card.json`` (model card data, including the
sha256 of every weight file), and optionally ``group_stats.json`` (the training images' statistics the blind mode's
group term holds a group of recoveries to, ``mimic.groupstats``; its sha256 in the card too).
``pretrained/<name>/`` folders are registered by name.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..groupstats import GroupStats
from .models import ARCHS, FMNISTClassifier, build_gan

__all__ = ["Prior", "get_prior", "load_prior", "list_priors", "pretrained_dir", "sha256_file", "PriorError", "load_classifier"]


class PriorError(RuntimeError):
    """A prior that cannot be loaded (missing, altered or malformed file)."""


def pretrained_dir() -> Path:
    """Where shipped priors live: ``$MIMIC_PRETRAINED``, the installed package data, or the repo's ``pretrained/``."""
    env = os.environ.get("MIMIC_PRETRAINED")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent  # mimic/
    for cand in (here / "pretrained", here.parent / "pretrained"):
        if cand.is_dir():
            return cand
    return here.parent / "pretrained"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_priors() -> list[str]:
    """Names of the shipped priors (folders of ``pretrained/`` with a ``card.json``)."""
    d = pretrained_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "card.json").exists())


@dataclass
class Prior:
    """A frozen GAN prior.

    Attributes
    ----------
    G : nn.Module
        Generator, z (N, nz) in [-1, 1] -> images (N, C, R, R) in [-1, 1]. Eval mode, no grad.
    D : nn.Module
        Discriminator, images -> logits (N,). Eval mode, no grad.
    """

    name: str
    G: nn.Module
    D: nn.Module
    nz: int
    channels: int
    resolution: int
    path: str
    sha256: dict = field(default_factory=dict)
    card: dict = field(default_factory=dict)
    group_stats: GroupStats | None = None  # the training images' statistics (group_stats.json), or None

    def to(self, device) -> "Prior":
        self.G.to(device)
        self.D.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device


def _verify(folder: Path, card: dict, files: list[str], *, trust_unverified: bool = False) -> dict:
    """sha256 of each weight file, checked against the card's; a file the card lists no sha256 for (or a folder with
    no card.json) is refused unless ``trust_unverified``."""
    sums = {}
    card_path = folder / "card.json"
    expected = card.get("sha256", {}) if isinstance(card.get("sha256"), dict) else {}
    for fname in files:
        p = folder / fname
        if not p.exists():
            raise PriorError(f"{p}: missing weight file")
        if fname not in expected and not trust_unverified:
            why = f"{card_path} lists no sha256 for it" if card_path.exists() else f"no {card_path}"
            raise PriorError(f"{p}: unverified weights ({why}); pass trust_unverified=True (CLI: --trust-unverified) "
                             "to use them anyway")
        got = sha256_file(p)
        if fname in expected and expected[fname] != got:
            raise PriorError(f"{p}: sha256 mismatch (file altered or truncated; expected {expected[fname][:12]}…, got {got[:12]}…)")
        sums[fname] = got
    return sums


def _resolve(name_or_path) -> tuple[str, Path]:
    p = Path(str(name_or_path))
    if p.is_dir():
        return p.name, p
    if str(name_or_path) in list_priors():
        return str(name_or_path), pretrained_dir() / str(name_or_path)
    valid = ", ".join(list_priors()) or "(none shipped)"
    raise PriorError(f"unknown prior {name_or_path!r} (not a folder either); valid: {valid}")


#: config.json keys that say how to build the networks (``mimic.priors.models.build_gan``'s settings)
_NETWORK_KEYS = ("nz", "ngf", "ndf", "d_norm", "spectral_norm", "attention")


def load_prior(name_or_path="celeba64", *, device="cpu", trust_unverified: bool = False) -> Prior:
    """Load a GAN prior by shipped name (``list_priors()``) or folder path; a ``Prior`` is returned as is.

    Checks each weight file's sha256 against ``card.json`` and raises :class:`PriorError` with a
    one-line message naming the file when it is missing or altered, or when there is no sha256 to
    check it against (no ``card.json``, or a card that lists none for it) unless ``trust_unverified``
    (a generator altered in place would otherwise be used silently). ``mimic train prior`` and
    ``export_prior`` write the card's sha256 of the weights they export.

    The networks are built as ``config.json`` says (``arch``, and ``nz``, ``ngf``, ``ndf``, ``d_norm``,
    ``spectral_norm``, ``attention`` as ``export_prior`` writes them; the DCGAN's settings where absent).
    """
    if isinstance(name_or_path, Prior):
        return name_or_path.to(device)
    from safetensors.torch import load_file

    name, folder = _resolve(name_or_path)
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise PriorError(f"{cfg_path}: missing (a prior folder needs config.json)")
    cfg = json.loads(cfg_path.read_text())
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    arch = cfg.get("arch")
    if arch not in ARCHS:
        raise PriorError(f"{cfg_path}: unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    files = ["generator.safetensors", "discriminator.safetensors"]
    has_stats = (folder / "group_stats.json").exists()
    sums = _verify(folder, card, files + ["group_stats.json"] * has_stats, trust_unverified=trust_unverified)
    try:
        stats = GroupStats.load(folder / "group_stats.json") if has_stats else None
    except ValueError as e:
        raise PriorError(str(e)) from None
    _, _, nc, res = ARCHS[arch]
    try:  # the settings the networks were trained with (config.json of export_prior; the DCGAN's when absent)
        G, D = build_gan(arch, **{k: cfg[k] for k in _NETWORK_KEYS if k in cfg})
    except (TypeError, ValueError) as e:
        raise PriorError(f"{cfg_path}: {e}") from None
    try:
        G.load_state_dict(load_file(str(folder / "generator.safetensors")))
        D.load_state_dict(load_file(str(folder / "discriminator.safetensors")))
    except Exception as e:  # noqa: BLE001
        raise PriorError(f"{folder}: weights do not match arch {arch!r} ({str(e).splitlines()[0]})") from None
    for m in (G, D):
        m.eval()
        m.requires_grad_(False)
        m.to(memory_format=torch.channels_last)  # faster convolutions (CPU and GPU); outputs unchanged
    return Prior(name=name, G=G, D=D, nz=cfg.get("nz", 100), channels=nc, resolution=res, path=str(folder),
                 sha256=sums, card=card, group_stats=stats).to(device)


get_prior = load_prior  # the registry convention's name (list_priors / get_prior)


def load_classifier(name_or_path="fmnist_classifier", *, device="cpu", trust_unverified: bool = False) -> FMNISTClassifier:
    """Load the shipped Fashion-MNIST classifier (eval mode, frozen), checking its sha256 against ``card.json``
    (refused, as by :func:`load_prior`, when there is none to check unless ``trust_unverified``)."""
    from safetensors.torch import load_file

    _, folder = _resolve(name_or_path)
    card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").exists() else {}
    _verify(folder, card, ["classifier.safetensors"], trust_unverified=trust_unverified)
    m = FMNISTClassifier()
    m.load_state_dict(load_file(str(folder / "classifier.safetensors")))
    m.eval().requires_grad_(False)
    return m.to(device)
