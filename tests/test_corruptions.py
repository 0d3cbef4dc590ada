import numpy as np
import pytest
import torch

from mimic.corruptions import get_corruption, list_corruptions
from mimic.corruptions.base import blur, gaussian_kernel

CELEBA = list_corruptions("celeba")
FMNIST = list_corruptions("fmnist")


def _x(name, n=3, g=0):
    dom = get_corruption(name).domain
    shape = (n, 1, 28, 28) if dom == "fmnist" else (n, 3, 64, 64)
    return torch.rand(shape, generator=torch.Generator().manual_seed(g)) * 2 - 1


def test_registry_lists_paper_tasks():
    for n in ["gray_blur", "stylize", "stuck_pixels", "negative", "occlusion", "inpainting",
              "remove_pixel", "remove_pixel_channel", "convolve_noise", "patch_band",
              "binarize", "drop_pixels", "blur_negative"]:
        assert n in list_corruptions()


def test_unknown_name_lists_valid():
    with pytest.raises(KeyError, match="valid: .*gray_blur"):
        get_corruption("nope")


def test_object_accepted():
    c = get_corruption("negative")
    assert get_corruption(c) is c


@pytest.mark.parametrize("name", list_corruptions())
def test_shape_range_determinism(name, device):
    c = get_corruption(name).to(device)
    x = _x(name).to(device)
    y1 = c(x, generator=torch.Generator().manual_seed(3))
    y2 = c(x, generator=torch.Generator().manual_seed(3))
    assert y1.shape == (x.shape[0], c.out_channels(x.shape[1]), *x.shape[2:])
    assert y1.device.type == device.type
    assert torch.isfinite(y1).all()
    assert y1.min() >= -1 - 1e-6 and y1.max() <= 1 + 1e-6
    assert torch.equal(y1, y2)


@pytest.mark.parametrize("name", [n for n in list_corruptions() if get_corruption(n).differentiable])
def test_gradient_flows(name):
    c = get_corruption(name)
    x = _x(name).requires_grad_(True)
    c(x, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gray_blur_matches_opencv():
    import cv2

    x = _x("gray_blur", n=2)
    y = get_corruption("gray_blur")(x)
    for i in range(2):
        u8 = np.round((x[i].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.float32)
        b = cv2.GaussianBlur(u8, (15, 15), 0)
        g = b @ np.array([0.299, 0.587, 0.114], np.float32)
        ref = np.minimum(np.round(g), 120)
        got = (y[i, 0].numpy() + 1) * 127.5
        # our blur runs on [-1,1] floats, OpenCV on the 8-bit grid: at most one gray level apart
        assert np.abs(got - ref).max() <= 1.01
    assert y.max() <= 120 / 127.5 - 1 + 1e-6


def test_negative_is_negated_blur():
    x = _x("negative")
    y = get_corruption("negative")(x)
    assert torch.allclose(y, -blur(x, gaussian_kernel(11)))


def test_stuck_pixels_definition():
    x = _x("stuck_pixels")
    c = get_corruption("stuck_pixels", noise_std=0.0)
    y = c(x)
    assert torch.equal(y[..., 26:], x[..., 26:])
    assert torch.equal(y[..., :26], x[..., 26:27].expand_as(y[..., :26]))
    # with noise: one pattern shared by the batch
    y = get_corruption("stuck_pixels")(x, generator=torch.Generator().manual_seed(0))
    d = y[..., :26] - x[..., 26:27]
    inside = (y[..., :26].abs() < 0.999)
    assert torch.allclose((d[0] - d[1])[inside[0] & inside[1]], torch.zeros(1), atol=1e-6)


def test_occlusion_and_inpainting_regions():
    x = _x("occlusion")
    y = get_corruption("occlusion")(x, generator=torch.Generator().manual_seed(0))
    changed = (y != x).any(1)[0]
    assert changed[32, 32] and not changed[0, 0] and not changed[5, 32]
    assert int(changed.sum()) <= 20 * 42 * 2
    y = get_corruption("inpainting")(x, generator=torch.Generator().manual_seed(0))
    changed = (y != x).any(1).any(0)
    assert changed[4:8, 12:54].all() and changed[60:64, 12:54].all()
    assert not changed[8:12].any() and not changed[:, :12].any() and not changed[:, 54:].any()


def test_stylize_needs_uint8_path_and_replaces_bright():
    x = _x("stylize", n=2)
    y = get_corruption("stylize", noise_std=0.0)(x)
    # the brightest ~10% share the 90th-percentile value when the noise is off
    for i in range(2):
        v = y[i].flatten()
        top = torch.quantile(v, 0.95)
        assert (v == v.max()).float().mean() >= 0.05 or top == v.max()


def test_pajot_masks():
    x = _x("remove_pixel", n=4)
    c = get_corruption("remove_pixel", p=0.9)
    y = c(x, generator=torch.Generator().manual_seed(0))
    frac = float((y == 0).all(1).float().mean())
    assert 0.85 < frac < 0.95
    m = c.known_mask(x, y)
    assert torch.equal(y, x * m)
    c = get_corruption("patch_band", h=20)
    y = c(x, generator=torch.Generator().manual_seed(0))
    rows_zero = (y == 0).all(1).all(-1)  # (N, H)
    assert (rows_zero.sum(1) == 20).all()


def test_fmnist_corruptions():
    x = _x("binarize", n=4)
    y = get_corruption("binarize")(x)
    assert set(torch.unique(y).tolist()) <= {-1.0, 1.0}
    assert abs(float((y > 0).float().mean()) - 0.5) < 0.02
    y = get_corruption("drop_pixels")(x, generator=torch.Generator().manual_seed(0))
    assert 0.65 < float((y == -1).float().mean()) < 0.75
