"""mimic.ood: the out-of-prior score (fast checks on tiny synthetic inputs; one slow check with the shipped prior)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from mimic.io import to_tensor, to_uint8
from mimic.ood import SIGMA, THRESHOLD, face_score, out_of_prior


def _blobs(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) smooth random images in [-1, 1] with edges (a few bright discs on a ramp)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        img = (xx / size - 0.5) * torch.rand(1, generator=g)
        for _ in range(3):
            cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([size, size, size / 4])).tolist()
            img = img + ((yy - cy) ** 2 + (xx - cx) ** 2 < (r + 2) ** 2).float() * (torch.rand(1, generator=g) - 0.5)
        col = torch.rand(3, 1, 1, generator=g) * 0.5 + 0.5
        out[i] = (img * col).clamp(-1, 1)
    return out


def test_identical_is_one_unrelated_is_low():
    x = _blobs(4)
    s = face_score(to_uint8(x), x)
    assert s.shape == (4,) and s.dtype == np.float64
    assert np.all(s > 0.98)
    other = _blobs(4, seed=1)
    assert np.all(face_score(to_uint8(other), x) < 0.6)
    assert np.all((face_score(to_uint8(other), x) >= 0) & (face_score(to_uint8(other), x) <= 1))


def test_corruption_invariances():
    x = _blobs(3)
    gray = to_uint8(x.mean(1, keepdim=True))  # a 1-channel observation of a colour recovery
    neg = to_uint8(-x * 0.5)  # negated, lower contrast
    blurred = to_uint8(torch.nn.functional.avg_pool2d(x, 3, 1, 1))
    for obs in (gray, neg, blurred):
        assert np.all(face_score(obs, x) > 0.8)


def test_fill_pixels_are_left_out():
    x = _blobs(2, size=64)
    y = to_uint8(x)
    g = torch.Generator().manual_seed(0)
    removed = torch.rand(2, 64, 64, generator=g).numpy() < 0.9  # 90% of the pixels set to mid-gray (removed)
    y[removed] = 128
    assert np.all(face_score(y, x) > 0.8)


def test_flat_observation_scores_zero_and_warns():
    x = _blobs(2)
    flat = np.full((2, 32, 32, 3), 90, np.uint8)
    assert np.all(face_score(flat, x) == 0)
    assert out_of_prior(flat, x).tolist() == [True, True]
    assert out_of_prior(to_uint8(x), x).tolist() == [False, False]


def test_input_forms_agree():
    x = _blobs(3)
    y = to_uint8(x * 0.8)
    ref = face_score(y, x)
    np.testing.assert_allclose(face_score(list(y), x), ref)  # Recovery.observed is a list
    np.testing.assert_allclose(face_score(to_tensor(y), x), ref)
    np.testing.assert_allclose(face_score(y, to_uint8(x)), ref, atol=2e-3)  # Recovery.images
    assert face_score(y[:0], x[:0]).shape == (0,)


def test_bad_inputs():
    x = _blobs(2)
    with pytest.raises(ValueError):
        face_score(to_uint8(x[:1]), x)  # N differs
    with pytest.raises(ValueError):
        face_score(to_uint8(x).astype(np.float32), x)  # float arrays are ambiguous
    with pytest.raises(ValueError):
        face_score(to_uint8(x), x, sigma=0)
    assert 0 < THRESHOLD < 1 and SIGMA > 0


def test_mixed_channel_lists():
    x = _blobs(3)
    obs = [to_uint8(x[:1])[0], to_uint8(x[1:2].mean(1, keepdim=True))[0], to_uint8(-x[2:])[0]]  # RGB, gray, RGB
    mim = list(to_uint8(x))
    s = face_score(obs, mim)  # Recovery.observed mixes channel counts when the inputs do
    np.testing.assert_allclose(s[1], face_score(obs[1][None], x[1:2])[0], atol=2e-3)
    assert np.all(s > 0.9)


@pytest.mark.slow
def test_shipped_prior_flags_non_faces():
    """One group of 25 (the default batch size, what THRESHOLD was chosen for): the 16 committed faces and the 9
    colour photos of scikit-image that are not faces, recovered with the blind preset and the short schedule of
    experiments/ood_roc.py. Every face passes; the coffee cup and the rocket are flagged."""
    skdata = pytest.importorskip("skimage.data")
    from mimic import recover
    from mimic.data import celeba_crop
    from mimic.io import read_image

    torch.set_num_threads(2)
    faces = [np.asarray(read_image(p)) for p in
             sorted((Path(__file__).resolve().parent.parent / "examples" / "clean").glob("*.png"))]
    names = ("coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel",
             "logo", "stereo_motorcycle")
    others = []
    for n in names:
        a = getattr(skdata, n)()
        a = a[0] if isinstance(a, tuple) else a  # stereo_motorcycle: (left, right, disparity)
        others.append(celeba_crop(np.ascontiguousarray(a[..., :3]), 64, crop_fraction=1.0))
    r = recover(faces + others, task=None, prior="celeba64", device="cpu", warm_steps=100, T=3, T1=10, T2=10,
                adapt_steps=0)  # the score reads the fit of the prior's own range (before any adaptation)
    s = face_score(r.observed, r.mimicked)
    warned = out_of_prior(r.observed, r.mimicked)
    assert not warned[: len(faces)].any(), s[: len(faces)]
    assert warned[len(faces) : len(faces) + 2].all(), dict(zip(names, s[len(faces):].round(3)))
