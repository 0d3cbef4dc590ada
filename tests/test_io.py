"""Reading image files: every pixel type comes back as uint8 with its values, or as a one-line error."""
import numpy as np
import pytest
from PIL import Image

from mimic.io import ImageReadError, read_image


@pytest.fixture
def gray8():
    return np.random.default_rng(0).integers(0, 256, (9, 7), dtype=np.uint8)


def test_16bit_png_is_scaled_not_clipped(tmp_path, gray8):
    f = tmp_path / "g16.png"
    Image.fromarray(gray8.astype(np.uint16) * 257).save(f)  # the 8-bit values at 16 bits
    assert Image.open(f).mode.startswith("I")
    np.testing.assert_array_equal(read_image(f)[..., 0], gray8)


def test_float_tiff_in_unit_range(tmp_path, gray8):
    f = tmp_path / "f.tif"
    Image.fromarray(gray8.astype(np.float32) / 255).save(f)
    assert Image.open(f).mode == "F"
    np.testing.assert_array_equal(read_image(f)[..., 0], gray8)


@pytest.mark.parametrize("arr, what", [(np.full((4, 4), 2.5, np.float32), "float pixel values outside [0, 1]"),
                                       (np.full((4, 4), 70000, np.int32), "integer pixel values outside 0-65535 (mode I)")])
def test_out_of_range_pixel_values_name_the_file(tmp_path, arr, what):
    f = tmp_path / "odd.tif"
    Image.fromarray(arr).save(f)
    with pytest.raises(ImageReadError) as e:
        read_image(f)
    assert str(e.value) == f"{f}: {what}"


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("L", 1), ("RGBA", 4), ("LA", 4), ("P", 3), ("1", 1)])
def test_modes(tmp_path, gray8, mode, channels):
    rgb = np.stack([gray8, 255 - gray8, gray8 // 2], -1)
    f = tmp_path / f"m_{mode}.png"
    Image.fromarray(rgb).convert(mode).save(f)
    a = read_image(f)
    assert a.dtype == np.uint8 and a.shape == (9, 7, channels)
    if mode == "RGB":
        np.testing.assert_array_equal(a, rgb)


def _png_of_zeros(path, w, h):
    """A gray PNG of w x h zero pixels, written without holding the pixels (a decompression bomb for large sizes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    c = zlib.compressobj(9)
    rows = b"\0" * ((w + 1) * 100)  # filter byte + w pixels, 100 rows at a time
    body = b"".join(c.compress(rows) for _ in range(h // 100)) + c.compress(b"\0" * ((w + 1) * (h % 100))) + c.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("w, h, size", [(14000, 13000, "182000000 pixels"),  # above Pillow's own bomb limit too
                                        (7000, 6500, "7000x6500")])  # above ours (40 M) only
def test_decompression_bomb_is_refused_by_name_before_decoding(tmp_path, w, h, size):
    f = _png_of_zeros(tmp_path / "bomb.png", w, h)
    assert f.stat().st_size < 300_000
    with pytest.raises(ImageReadError) as e:
        read_image(f)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and str(f) in msg and size in msg and "MIMIC_MAX_PIXELS" in msg


def test_pixel_limit_is_configurable(tmp_path, monkeypatch, gray8):
    import mimic.io

    f = tmp_path / "g.png"
    Image.fromarray(gray8).save(f)  # 9 x 7 = 63 pixels
    monkeypatch.setenv("MIMIC_MAX_PIXELS", "62")
    with pytest.raises(ImageReadError, match=r"g\.png: image too large \(7x9 = 63 pixels; the limit is 62"):
        read_image(f)
    monkeypatch.setenv("MIMIC_MAX_PIXELS", "63")
    assert read_image(f).shape == (9, 7, 1)
    monkeypatch.delenv("MIMIC_MAX_PIXELS")
    monkeypatch.setattr(mimic.io, "MAX_PIXELS", 10)
    with pytest.raises(ImageReadError, match="the limit is 10 pixels"):
        read_image(f)
    monkeypatch.setenv("MIMIC_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="MIMIC_MAX_PIXELS='lots'"):
        read_image(f)


def test_folder_runs_skip_an_oversized_image_by_name(tmp_path, monkeypatch):
    """Like any unreadable file: reported by name, the others are done (``mimic corrupt``, the cheapest folder run)."""
    from click.testing import CliRunner

    from mimic.cli.main import cli

    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(inp / f"ok{i}.png")
    Image.fromarray(np.zeros((80, 90, 3), np.uint8)).save(inp / "big.png")
    monkeypatch.setenv("MIMIC_MAX_PIXELS", str(64 * 64))
    r = CliRunner().invoke(cli, ["corrupt", str(inp), "--task", "gray_blur", "--out", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output
    assert "big.png" in r.stderr and "image too large (90x80" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["ok0.png", "ok1.png"]


@pytest.mark.parametrize("orientation, turn", [(1, lambda a: a), (3, lambda a: a[::-1, ::-1]),
                                               (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    """A phone photo stored sideways with an orientation tag comes back as viewers show it."""
    a = np.zeros((16, 32, 3), np.uint8)
    a[:8, :8] = (255, 0, 0)  # a red block at the stored image's top-left corner
    a[:, 24:] = (0, 0, 255)  # a blue band on its right
    f = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(f, quality=95, exif=exif)
    assert Image.open(f).getexif()[0x0112] == orientation
    got = read_image(f).astype(int)
    want = turn(a).astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() < 8  # JPEG


def test_training_images_are_upright_and_limited_too(tmp_path, monkeypatch):
    from mimic.data import load_image_folder

    a = np.zeros((16, 32, 3), np.uint8)
    a[:, 16:] = 255  # right half white; stored sideways (tag 6: turn 90 degrees clockwise to view)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(tmp_path / "p.jpg", quality=95, exif=exif)
    x = load_image_folder([tmp_path / "p.jpg"], size=16, crop_fraction=1.0, cache=False)[0].astype(int)
    assert x[12:, :, 0].mean() > 200 and x[:4, :, 0].mean() < 50  # upright: the white half is at the bottom
    monkeypatch.setenv("MIMIC_MAX_PIXELS", "100")
    with pytest.raises(ImageReadError, match=r"p\.jpg: image too large"):
        load_image_folder([tmp_path / "p.jpg"], size=16, crop_fraction=1.0, cache=False)
