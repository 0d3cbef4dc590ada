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
