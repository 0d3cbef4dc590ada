import numpy as np
import pytest
import torch

import mimic
from mimic import recover
from mimic.inputs import InputError

FAST = dict(warm_steps=3, T=1, T1=2, T2=2, adapt_steps=2)


def _imgs(n=3, c=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, size, size, c) if c else (n, size, size)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def test_public_surface():
    for name in mimic.__all__:
        assert hasattr(mimic, name)
    assert "gray_blur" in mimic.list_tasks()


@pytest.mark.parametrize("form", ["rgb", "gray2d", "gray1", "list", "tensor"])
def test_input_forms_shapes_dtypes(form, tiny_prior_dir):
    if form == "rgb":
        images, cobs = _imgs(), 3
    elif form == "gray2d":
        images, cobs = _imgs(c=None), 1
    elif form == "gray1":
        images, cobs = _imgs(c=1), 1
    elif form == "list":
        images, cobs = list(_imgs()), 3
    else:
        images, cobs = torch.rand(3, 3, 64, 64) * 2 - 1, 3
    r = recover(images, task="gray_blur", prior=tiny_prior_dir, device="cpu", **FAST)
    assert r.images.shape == (3, 64, 64, 3) and r.images.dtype == np.uint8
    assert r.tensor.shape == (3, 3, 64, 64) and r.tensor.dtype == torch.float32
    assert r.tensor.min() >= -1 and r.tensor.max() <= 1
    assert r.z.shape == (3, 100) and r.z.abs().max() <= 1
    assert len(r.mimicked) == 3 and r.mimicked[0].shape == (64, 64, cobs) and r.mimicked[0].dtype == np.uint8
    assert len(r.surrogates) == 1 and r.surrogates[0]["out_channels"] == cobs
    assert len(r.history[0]["obs"]) == FAST["T"] + 1 + FAST["adapt_steps"]  # and one row per adaptation report
    assert np.isfinite(r.obs_loss).all()


def test_paths_and_resize_and_alpha(tmp_path, tiny_prior_dir):
    from PIL import Image

    Image.fromarray(_imgs(1, 4, 80)[0], "RGBA").save(tmp_path / "a.png")
    Image.fromarray(_imgs(1, 3)[0]).save(tmp_path / "b.jpg")
    r = recover([tmp_path / "a.png", str(tmp_path / "b.jpg")], prior=tiny_prior_dir, device="cpu", **FAST)
    assert r.images.shape == (2, 64, 64, 3)
    assert any("alpha" in n for n in r.notices) and any("resized 1" in n for n in r.notices)
    with pytest.raises(InputError, match="a.png.*strict"):
        recover([tmp_path / "a.png"], prior=tiny_prior_dir, device="cpu", strict_size=True, **FAST)
    folder = recover(tmp_path, prior=tiny_prior_dir, device="cpu", **FAST)  # a folder: its images, sorted
    assert folder.names == [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    assert np.array_equal(folder.images, r.images)
    one = recover(str(tmp_path / "b.jpg"), prior=tiny_prior_dir, device="cpu", **FAST)  # one file
    assert one.images.shape == (1, 64, 64, 3) and one.names == [str(tmp_path / "b.jpg")]


def test_mixed_channels_never_share_a_surrogate(tiny_prior_dir):
    imgs = [*_imgs(2), *_imgs(2, c=1)]
    r = recover(imgs, prior=tiny_prior_dir, device="cpu", batch_size=25, **FAST)
    assert len(set(r.group[:2])) == 1 and len(set(r.group[2:])) == 1 and r.group[0] != r.group[2]
    assert [m.shape[-1] for m in r.mimicked] == [3, 3, 1, 1]


def test_groups_of_batch_size(tiny_prior_dir):
    r = recover(_imgs(5), prior=tiny_prior_dir, device="cpu", batch_size=2, **FAST)
    assert r.group.tolist() == [0, 0, 1, 1, 2]


def test_seed_determinism(tiny_prior_dir):
    a = recover(_imgs(2), prior=tiny_prior_dir, device="cpu", seed=1, **FAST)
    b = recover(_imgs(2), prior=tiny_prior_dir, device="cpu", seed=1, **FAST)
    assert np.array_equal(a.images, b.images)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64), np.uint8), "shape"),
    (torch.full((1, 3, 64, 64), 3.0), r"\[-1, 1\]"),
    (torch.full((1, 3, 64, 64), float("nan")), "not finite"),
    (np.zeros((64, 64, 3), np.uint8), r"one \(H, W, C\) image.*image\[None\]"),
    ("no-such-folder", "no-such-folder: no such file or folder"),
    (3.5, "unsupported input type float"),
])
def test_bad_inputs(bad, match, tiny_prior_dir):
    with pytest.raises(InputError, match=match):
        recover(bad, prior=tiny_prior_dir, device="cpu", **FAST)


def test_unknown_names(tiny_prior_dir):
    with pytest.raises(KeyError, match="valid: gray_blur"):
        recover(_imgs(1), task="nope", prior=tiny_prior_dir)
    with pytest.raises(mimic.priors.PriorError, match="unknown prior"):
        recover(_imgs(1), prior="nope")
    with pytest.raises(TypeError, match="unknown MimicConfig"):
        recover(_imgs(1), prior=tiny_prior_dir, bogus=1)


def test_altered_weights_are_refused(tiny_prior_dir, tmp_path):
    import shutil

    d = tmp_path / "p"
    shutil.copytree(tiny_prior_dir, d)
    with open(d / "generator.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(mimic.priors.PriorError, match="generator.safetensors: sha256 mismatch"):
        mimic.load_prior(d)
    (d / "generator.safetensors").unlink()
    with pytest.raises(mimic.priors.PriorError, match="generator.safetensors: missing"):
        mimic.load_prior(d)


def test_atomic_write_permissions_and_no_leftovers(tmp_path):
    import os

    from mimic.io import atomic_write_bytes

    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert (tmp_path / "a.bin").read_bytes() == b"x"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_blind_preset_reports_and_skips_fill_pixels(tiny_prior_dir):
    """Pixels set to one constant (a removal mask) are detected per image and named in a notice."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    smooth = np.stack([gaussian_filter(rng.normal(size=(64, 64, 3)), (4, 4, 0)) for _ in range(3)])
    smooth = np.round(127.5 + 90 * smooth / np.abs(smooth).max()).astype(np.uint8)  # natural-looking, no spikes
    plain = recover(smooth, prior=tiny_prior_dir, device="cpu", **FAST)
    assert not any("fill" in n for n in plain.notices)
    holes = smooth.copy()
    holes[rng.random((3, 64, 64)) < 0.6] = 128  # 60% of the pixels of every image set to mid-gray
    r = recover(holes, prior=tiny_prior_dir, device="cpu", **FAST)
    assert any(n.startswith("3 image(s) hold a constant fill value in 60%") for n in r.notices), r.notices
    assert r.fill.shape == (3,) and np.all(np.abs(r.fill - 0.6) < 0.03) and np.all(plain.fill == 0)
    off = recover(holes, prior=tiny_prior_dir, device="cpu", fill=False, **FAST)
    assert not any("fill" in n for n in off.notices)
    assert not np.array_equal(r.images, off.images)  # the detected pixels were left out of the fit


def test_recovery_repr_is_short_and_save_writes_the_cli_layout(tmp_path, tiny_prior_dir):
    r = recover(_imgs(3), prior=str(tiny_prior_dir), device="cpu", **FAST)
    assert len(repr(r)) < 200 and "3 image(s)" in repr(r)
    d = r.save(tmp_path / "out")
    assert sorted(p.name for p in (d / "recovered").iterdir()) == ["image_0.png", "image_1.png", "image_2.png"]
    assert (d / "mimicked" / "image_0.png").exists()
    import json

    rep = json.loads((d / "report.json").read_text())
    assert [x["stem"] for x in rep["images"]] == ["image_0", "image_1", "image_2"]


def test_api_bad_inputs_raise_one_line_errors(tmp_path, tiny_prior_dir):
    kw = dict(prior=str(tiny_prior_dir), device="cpu", **FAST)
    with pytest.raises(InputError, match="missing.png"):
        recover([_imgs(1)[0], str(tmp_path / "missing.png")], **kw)
    r = recover([_imgs(1)[0], str(tmp_path / "missing.png")], on_error="skip", **kw)
    assert len(r) == 1 and r.skipped[0][0].endswith("missing.png")
    with pytest.raises(InputError, match="names: 1 given for 2"):
        recover(_imgs(2), names=["a"], **kw)
    with pytest.raises(InputError, match="empty image"):
        recover(np.zeros((1, 0, 0, 3), np.uint8), **kw)
    with pytest.raises(InputError, match="seed"):
        recover(_imgs(1), seed=2**64, **kw)
    with pytest.raises(InputError, match="device"):
        recover(_imgs(1), prior=str(tiny_prior_dir), device="tpu")


def test_same_images_same_names_same_result_whatever_the_batch(tiny_prior_dir):
    """A group's randomness comes from its images' names and the seed, not from its position."""
    imgs = _imgs(4)
    names = [f"n{i}" for i in range(4)]
    a = recover(imgs, names=names, batch_size=2, prior=str(tiny_prior_dir), device="cpu", **FAST)
    b = recover(imgs[2:], names=names[2:], batch_size=2, prior=str(tiny_prior_dir), device="cpu", **FAST)
    assert np.array_equal(a.images[2:], b.images)
    c = recover(imgs[2:], names=names[2:], batch_size=2, seed=1, prior=str(tiny_prior_dir), device="cpu", **FAST)
    assert not np.array_equal(b.images, c.images)


def test_recovery_face_scores_where_the_prior_has_a_threshold(tiny_prior_dir, monkeypatch):
    """Recovery.face_score (mimic.ood) for a MimicGAN recovery with a prior whose threshold was measured, None for
    other priors and for PGD; a flat observation (no edges) is out of the prior and named in the notices."""
    from mimic import ood

    imgs = _imgs(3)
    imgs[1] = 128  # flat: nothing for a face to line up with
    kw = dict(prior=str(tiny_prior_dir), device="cpu", **FAST)
    plain = recover(imgs, **kw)
    assert plain.face_score is None and plain.out_of_prior is None
    assert not any("face score" in n for n in plain.notices)
    monkeypatch.setitem(ood.THRESHOLDS, tiny_prior_dir.name, ood.THRESHOLD)
    r = recover(imgs, **kw)
    assert r.face_score.shape == (3,) and r.face_threshold == ood.THRESHOLD
    np.testing.assert_allclose(r.face_score, ood.face_score(r.observed, r.mimicked))
    assert r.face_score[1] == 0 and r.out_of_prior[1] and r.out_of_prior.dtype == bool
    n = int(r.out_of_prior.sum())
    assert any(m.startswith(f"{n} of 3 image(s) have a face score below 0.32") for m in r.notices), r.notices
    assert len(repr(r)) < 200 and f"{n} out of prior" in repr(r)
    assert recover(imgs, method="pgd", **kw).face_score is None


def test_threshold_is_for_the_shipped_celeba64_weights_only(tmp_path):
    import shutil

    from mimic.ood import THRESHOLD, threshold_for
    from mimic.priors import load_prior, pretrained_dir

    assert threshold_for("celeba64") == THRESHOLD and threshold_for("fmnist28") is None
    assert threshold_for(load_prior("celeba64")) == THRESHOLD
    copy = shutil.copytree(pretrained_dir() / "celeba64", tmp_path / "celeba64")  # the same weights elsewhere
    assert threshold_for(load_prior(copy)) == THRESHOLD
    other = shutil.copytree(pretrained_dir() / "fmnist28", tmp_path / "x" / "celeba64")  # other weights, same name
    assert threshold_for(load_prior(other)) is None
