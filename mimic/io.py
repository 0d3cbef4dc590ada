"""Image reading, writing (atomic) and grids.

Conventions: uint8 images are (H, W, C) or (N, H, W, C) in [0, 255]; float
tensors are (N, C, H, W) in [-1, 1], float32.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "to_tensor",
    "to_uint8",
    "make_grid",
    "atomic_write_bytes",
    "save_png",
    "save_json",
    "read_image",
    "ImageReadError",
    "MAX_PIXELS",
    "max_pixels",
    "open_image",
    "exif_upright",
]

#: The largest image (width x height) that is decoded; ``$MIMIC_MAX_PIXELS`` overrides it. A larger file is refused with
#: :class:`ImageReadError` before its pixels are decoded (a small PNG can declare 14000x13000 pixels: 182 M, 0.5 GB
#: as RGB). Pillow's own decompression-bomb limit (about 179 M pixels) applies on top of it.
MAX_PIXELS = 40_000_000


class ImageReadError(ValueError):
    """A file that is not a readable image."""


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) in [0, 255] -> float32 (N, C, H, W) in [-1, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    arr = np.ascontiguousarray(arr) if arr.flags.writeable else np.array(arr)
    t = torch.from_numpy(arr).permute(0, 3, 1, 2).float()  # (N,H,W,C)->(N,C,H,W)
    return t / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), rounded and clipped."""
    x = x.detach().float().cpu().clamp(-1, 1)
    arr = ((x + 1.0) * 127.5).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).numpy()  # (N,C,H,W)->(N,H,W,C)


def make_grid(images: np.ndarray, *, ncol: int | None = None, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) into one (rows*H', ncol*W', 3) uint8 image.

    1-channel images are shown as gray RGB.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n, h, w, _ = images.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), pad_value, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = images[i]
    return grid


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Save a uint8 (H, W), (H, W, 1) or (H, W, 3) image as PNG, atomically."""
    import io

    from PIL import Image

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def save_json(path: str | os.PathLike, obj) -> None:
    """Save ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_text(path: str | os.PathLike, text: str) -> None:
    """Save UTF-8 text (a markdown table, a report), atomically."""
    atomic_write_bytes(path, text.encode())


def max_pixels() -> int:
    """The pixel limit in force: ``$MIMIC_MAX_PIXELS`` (an integer, ``4e7`` accepted) or :data:`MAX_PIXELS`."""
    env = os.environ.get("MIMIC_MAX_PIXELS", "").strip()
    if not env:
        return MAX_PIXELS
    try:
        v = float(env)
    except ValueError:
        v = float("nan")
    if not (v >= 1 and v == int(v)):
        raise ValueError(f"MIMIC_MAX_PIXELS={env!r}: not a positive whole number of pixels")
    return int(v)


def open_image(path: str | os.PathLike, *, limit: int | None = None):
    """Open an image file (a PIL image, not yet decoded; use it as a context manager) after checking its size against
    :func:`max_pixels`; :class:`ImageReadError` names the file and its size when it is larger, or says why the file is
    not an image."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    limit = max_pixels() if limit is None else limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            im = Image.open(path)
    except Image.DecompressionBombError as e:  # larger than Pillow's own limit, which is checked on opening
        import re

        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1))} pixels" if m else str(e)
        raise ImageReadError(f"{path}: image too large ({size}; the limit is {limit} pixels, MIMIC_MAX_PIXELS)") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    w, h = im.size
    if w * h > limit:
        im.close()
        raise ImageReadError(f"{path}: image too large ({w}x{h} = {w * h} pixels; the limit is {limit} pixels, "
                             "MIMIC_MAX_PIXELS)")
    return im


def exif_upright(im):
    """``im`` turned as its EXIF orientation tag says (a photo taken sideways), or ``im`` itself when it has none."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001  (damaged EXIF data: the pixels are still the image's, as stored)
        return im


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 (H, W, C) with C in {1, 3, 4}.

    16-bit (and 32-bit integer) gray images are scaled from 0-65535 to 0-255, 32-bit float gray ones from [0, 1];
    palette images are expanded, gray with alpha becomes RGBA. An EXIF orientation tag is applied (the image comes
    back upright, as viewers show it).

    Raises
    ------
    ImageReadError
        With a one-line reason when the file is not a readable image, or is larger than :func:`max_pixels`
        (checked before decoding).
    """
    from PIL import Image, UnidentifiedImageError

    limit = max_pixels()  # a malformed MIMIC_MAX_PIXELS is a ValueError of its own, not an unreadable file
    try:
        with open_image(path, limit=limit) as im0:
            im0.load()
            im = exif_upright(im0)
            if im.mode in ("RGB", "L", "RGBA"):
                arr = np.asarray(im)
            elif im.mode in ("LA",):
                arr = np.asarray(im.convert("RGBA"))
            elif im.mode.startswith("I"):  # 16-bit (I;16, I;16B, ...) or 32-bit integer gray: read as 16-bit
                a = np.asarray(im).astype(np.int64)
                if a.size and (a.min() < 0 or a.max() > 65535):
                    raise ImageReadError(f"{path}: integer pixel values outside 0-65535 (mode {im.mode})")
                arr = np.round(a / 257.0).astype(np.uint8)  # 0..65535 -> 0..255 (x 257 inverted)
            elif im.mode == "F":  # 32-bit float gray: taken as [0, 1]
                a = np.asarray(im).astype(np.float64)
                if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
                    raise ImageReadError(f"{path}: float pixel values outside [0, 1]")
                arr = np.round(a * 255.0).astype(np.uint8)
            elif im.mode == "1":
                arr = np.asarray(im.convert("L"))
            else:  # P, CMYK, YCbCr, ...
                arr = np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype != np.uint8:
        raise ImageReadError(f"{path}: unsupported pixel type {arr.dtype}")
    return np.ascontiguousarray(arr)


def labeled_grid(rows: list[np.ndarray], *, row_labels: list[str], captions: list[list[str]] | None = None,
                 scale: int = 1) -> np.ndarray:
    """Rows of uint8 images (each (N, H, W, C)) as one uint8 RGB figure with a label left of each row and
    an optional caption (e.g. PSNR) under each image."""
    from PIL import Image, ImageDraw

    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    h, w = h * scale, w * scale
    lab_w, cap_h, pad = 90, 12 if captions else 0, 2
    H = len(rows) * (h + cap_h + pad) + pad
    W = lab_w + n * (w + pad) + pad
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, r in enumerate(rows):
        r = np.asarray(r)
        if r.shape[-1] == 1:
            r = np.repeat(r, 3, axis=-1)
        top = pad + i * (h + cap_h + pad)
        draw.text((4, top + h // 2 - 5), row_labels[i], fill=(0, 0, 0))
        for j, im in enumerate(r):
            left = lab_w + pad + j * (w + pad)
            canvas.paste(Image.fromarray(im).resize((w, h), Image.NEAREST), (left, top))
            if captions and captions[i] and j < len(captions[i]) and captions[i][j]:
                draw.text((left + 2, top + h), captions[i][j], fill=(0, 0, 0))
    return np.asarray(canvas)
