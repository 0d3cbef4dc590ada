"""Turning what users give into observations: arrays, tensors, paths and folders.

Every image ends as uint8 (R, R, C) with C in {1, 3} at the prior's resolution R:
alpha is dropped, other sizes are centre-cropped to a square and area-resized
(or refused with ``strict_size``). Notices (how many were resized, alpha dropped)
are collected, not printed, so the caller decides where they go.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import IMAGE_EXTENSIONS, celeba_crop, list_images
from .io import ImageReadError, read_image, to_uint8

__all__ = ["InputError", "Prepared", "folder_notices", "input_notices", "prepare", "scan_folder"]


class InputError(ValueError):
    """Bad input, with a one-line message naming the file (or item) and what is wrong."""


@dataclass
class Prepared:
    images: list  # uint8 (R, R, C) arrays, C in {1, 3}
    names: list  # display names (file paths relative to the folder, or "image[i]")
    notices: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (name, reason)
    counts: dict = field(default_factory=dict)  # {"alpha": n, "resized": n}: what the notices say


def input_notices(counts: dict, resolution: int) -> list:
    """The notices for images whose alpha was dropped or that were resized (``Prepared.counts``)."""
    notices = []
    if counts.get("alpha"):
        notices.append(f"dropped the alpha channel of {counts['alpha']} image(s)")
    if counts.get("resized"):
        notices.append(f"centre-cropped and resized {counts['resized']} image(s) to {resolution}x{resolution}")
    return notices


def _fit(arr: np.ndarray, name: str, res: int, strict: bool, counts: dict) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"{name}: expected an image (H, W) or (H, W, C) with C in 1..4, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise InputError(f"{name}: expected uint8 pixels, got {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: empty image (shape {arr.shape})")
    if arr.shape[-1] in (2, 4):
        arr = arr[..., :-1]
        counts["alpha"] += 1
    if arr.shape[:2] != (res, res):
        if strict:
            raise InputError(f"{name}: size {arr.shape[1]}x{arr.shape[0]} is not {res}x{res} (strict size)")
        arr = celeba_crop(arr, res, crop_fraction=1.0)
        counts["resized"] += 1
    return np.ascontiguousarray(arr)


def prepare(images, *, resolution: int, strict_size: bool = False, names=None) -> Prepared:
    """Normalise user images (see module docstring).

    Parameters
    ----------
    images : ndarray | list | Tensor | str | PathLike
        uint8 array (N, H, W) or (N, H, W, C); a list of uint8 arrays and/or paths; a
        float tensor (N, C, H, W) in [-1, 1]; or the path of one image file or of a folder
        (its images, recursively, sorted).
    resolution : int
        The prior's resolution R.
    """
    counts = {"alpha": 0, "resized": 0}
    out, out_names, skipped = [], [], []
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or not images.is_floating_point():
            raise InputError(f"tensor input: expected float (N, C, H, W) in [-1, 1], got {images.dtype} {tuple(images.shape)}")
        if not bool(torch.isfinite(images).all()):
            raise InputError("tensor input: values not finite (NaN or inf)")
        if images.numel() and (images.min() < -1.001 or images.max() > 1.001):
            raise InputError("tensor input: values outside [-1, 1]")
        items = list(to_uint8(images))
    elif isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise InputError(f"array input: expected (N, H, W) or (N, H, W, C), got shape {images.shape}")
        if images.ndim == 3 and images.shape[-1] in (1, 3, 4) and images.shape[1] > 4:  # not N images 1-4 px wide
            raise InputError(f"array input: shape {images.shape} is one (H, W, C) image; give a batch "
                             "(1, H, W, C) (image[None]) or a list of images")
        items = list(images)
    elif isinstance(images, (list, tuple)):
        items = list(images)
    elif isinstance(images, (str, os.PathLike)):  # one image file, or a folder of them
        if not Path(images).exists():
            raise InputError(f"{images}: no such file or folder")
        items = scan_folder(images) if Path(images).is_dir() else [images]
    else:
        raise InputError(f"unsupported input type {type(images).__name__}; give a uint8 array, a float tensor, "
                         "a list of arrays or paths, or a path to an image or a folder")
    if names is None:
        names = [str(it) if isinstance(it, (str, os.PathLike)) else f"image[{i}]" for i, it in enumerate(items)]
    elif len(names) != len(items):
        raise InputError(f"names: {len(names)} given for {len(items)} image(s)")
    for it, name in zip(items, names):
        if isinstance(it, (str, os.PathLike)):
            try:
                it = read_image(it)
            except ImageReadError as e:
                skipped.append((name, str(e).split(": ", 1)[-1]))
                continue
        out.append(_fit(np.asarray(it), name, resolution, strict_size, counts))
        out_names.append(name)
    return Prepared(out, out_names, input_notices(counts, resolution), skipped, counts)


def scan_folder(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted). Raises InputError for a missing or empty folder."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    files = list_images(folder)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return files


def folder_notices(folder: str | os.PathLike) -> list[str]:
    """What a scan of ``folder`` passed over without a word: image links that point nowhere and subfolders that
    cannot be read (one notice each kind, naming the first)."""
    dangling, unreadable = [], []
    for root, dirs, names in os.walk(folder, onerror=lambda e: unreadable.append(e.filename)):
        for n in names:
            p = os.path.join(root, n)
            if Path(n).suffix.lower() in IMAGE_EXTENSIONS and os.path.islink(p) and not os.path.exists(p):
                dangling.append(p)
    notes = []
    if dangling:
        notes.append(f"skipped {len(dangling)} link(s) to missing files (first: {dangling[0]})")
    if unreadable:
        notes.append(f"skipped {len(unreadable)} unreadable subfolder(s) (first: {unreadable[0]})")
    return notes
