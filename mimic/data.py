"""Training and validation data: image folders (CelebA crop convention) and IDX files.

Images are returned as uint8 arrays of shape (N, H, W, C) in [0, 255]; the
conversion to float tensors in [-1, 1] happens in :func:`mimic.io.to_tensor`.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_images",
    "celeba_crop",
    "load_image_folder",
    "read_idx",
    "load_fmnist",
    "Split",
    "split_files",
    "default_data_root",
    "data_dir",
    "fmnist_dir",
    "DataNotFoundError",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def default_data_root() -> Path:
    """The data root: ``$MIMIC_DATA``, else a ``shared/data`` folder beside the checkout (see README, Data)."""
    env = os.environ.get("MIMIC_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class DataNotFoundError(FileNotFoundError):
    """Data a command needs (CelebA, Fashion-MNIST) is not where it looks: a one-line message naming ``--data`` and
    ``MIMIC_DATA``."""


def data_dir(name: str, data=None) -> Path:
    """The folder of data set ``name`` ("celeba", "fashion-mnist"): ``data`` if given, else
    ``default_data_root() / name``; :class:`DataNotFoundError` when it does not exist (an installed package's default
    root, beside site-packages, never does)."""
    if data is not None:
        d = Path(data)
        if not d.is_dir():
            raise DataNotFoundError(f"{d}: no such folder (--data)")
        return d
    d = default_data_root() / name
    if not d.is_dir():
        where = "MIMIC_DATA" if os.environ.get("MIMIC_DATA") else "the default data folder; MIMIC_DATA is not set"
        raise DataNotFoundError(f"{d}: no {name} data ({where}); give --data DIR, or set MIMIC_DATA to the folder "
                                f"that holds {name}/")
    return d


def fmnist_dir(data=None) -> Path:
    """The folder with the Fashion-MNIST IDX files: ``data`` or ``default_data_root() / "fashion-mnist"``, checked to
    hold the test set (:class:`DataNotFoundError` otherwise)."""
    root = data_dir("fashion-mnist", data)
    if not any((root / f"t10k-images-idx3-ubyte{x}").exists() for x in (".gz", "")):
        raise DataNotFoundError(f"{root}: no Fashion-MNIST test files (t10k-images-idx3-ubyte[.gz]); give --data DIR, "
                                "or set MIMIC_DATA to the folder that holds fashion-mnist/")
    return root


def list_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Sorted image files under ``folder`` (by relative path)."""
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def celeba_crop(img: np.ndarray, size: int = 64, *, crop_fraction: float = 108 / 178) -> np.ndarray:
    """Centre square crop of side ``crop_fraction * width``, then area-resize to ``size``.

    Parameters
    ----------
    img : ndarray, uint8, (H, W, C) or (H, W)
    size : int
        Output side length.
    crop_fraction : float
        Crop side as a fraction of the width (CelebA convention: 108/178). Use 1.0
        for a plain centre square crop of side ``min(H, W)``.
    """
    import cv2

    h, w = img.shape[:2]
    c = int(round(min(w * crop_fraction, h, w)))
    top, left = (h - c) // 2, (w - c) // 2
    crop = img[top : top + c, left : left + c]
    if c == size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if c > size else cv2.INTER_CUBIC
    out = cv2.resize(crop, (size, size), interpolation=interp)
    if out.ndim == 2 and img.ndim == 3:
        out = out[:, :, None]
    return out


@dataclass(frozen=True)
class Split:
    """A train / held-out division of a sorted file list.

    The held-out part is split again: ``val`` (for tuning) and ``test`` (for the
    figures we report).
    """

    train: list
    val: list
    test: list

    def describe(self, names=lambda p: Path(p).name) -> dict:
        d = {}
        for k in ("train", "val", "test"):
            items = getattr(self, k)
            d[k] = {"n": len(items), "first": names(items[0]) if items else None,
                    "last": names(items[-1]) if items else None}
        return d


def split_files(files: list, *, holdout: int = 1000) -> Split:
    """The last ``holdout`` items (in sorted order) are held out; first half val, second half test."""
    if holdout < 0 or holdout >= len(files):
        raise ValueError(f"holdout={holdout} must be in [0, {len(files)})")
    train = files[: len(files) - holdout]
    held = files[len(files) - holdout :]
    return Split(train=train, val=held[: holdout // 2], test=held[holdout // 2 :])


def _cache_dir() -> Path:
    d = Path(os.environ.get("MIMIC_CACHE", Path.home() / ".cache" / "mimic"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def load_image_folder(files: list[Path], *, size: int = 64, crop_fraction: float = 108 / 178,
                      channels: int = 3, cache: bool = True) -> np.ndarray:
    """Read, crop and resize images into one uint8 array (N, size, size, channels).

    The result is cached (keyed by the file list, sizes and crop) in ``$MIMIC_CACHE``
    (default ``~/.cache/mimic``) so that later epochs and runs skip the decoding.
    """
    from .io import exif_upright, open_image

    key = hashlib.sha256()
    for p in files:
        st = os.stat(p)
        key.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    key.update(f"{size}|{crop_fraction}|{channels}".encode())
    cpath = _cache_dir() / f"images-{key.hexdigest()[:20]}.npy"
    if cache and cpath.exists():
        return np.load(cpath)
    out = np.empty((len(files), size, size, channels), dtype=np.uint8)
    mode = "RGB" if channels == 3 else "L"
    for i, p in enumerate(files):
        with open_image(p) as im:  # refuses images above the pixel limit (MIMIC_MAX_PIXELS) before decoding
            arr = np.asarray(exif_upright(im).convert(mode))
        if arr.ndim == 2:
            arr = arr[:, :, None]
        out[i] = celeba_crop(arr, size, crop_fraction=crop_fraction).reshape(size, size, channels)
    if cache:
        tmp = cpath.with_suffix(f".{os.getpid()}.tmp.npy")  # per process: concurrent runs may fill the same entry
        np.save(tmp, out)
        os.replace(tmp, cpath)
    return out


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array (uint8 data)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: IDX header says {shape} but holds {arr.size} values")
    return arr.reshape(shape)


def load_fmnist(root: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28, 1) uint8 and labels (N,) int64 from IDX files in ``root``."""
    root = Path(root)
    prefix = {"train": "train", "test": "t10k"}[split]

    def find(stem):
        for cand in (root / f"{stem}.gz", root / stem):
            if cand.exists():
                return cand
        raise FileNotFoundError(f"{root}: no {stem}[.gz]")

    x = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    return x[:, :, :, None], y.astype(np.int64)
