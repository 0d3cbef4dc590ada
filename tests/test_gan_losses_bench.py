"""`mimic bench gan-losses` end to end on a tiny image folder, its budget, and the sliced Wasserstein distance."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mimic.bench.gan_losses import bench_gan_losses, train_for_budget
from mimic.cli.main import cli
from mimic.io import read_image, save_png
from mimic.metrics import laplacian_pyramid, sliced_wasserstein
from mimic.priors.train import TrainConfig

TINY = {"widths": (8, 8), "batch_size": 4, "holdout": 8, "device": "cpu"}


def _structured(n: int, seed: int = 0) -> np.ndarray:
    """n 64x64 RGB images: a smooth colour gradient, an ellipse of another colour, fine stripes and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    out = np.empty((n, 64, 64, 3))
    for i in range(n):
        c0, c1, c2 = rng.random((3, 3))
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy)[..., None]
        img = c0 * (1 - t) + c1 * t
        cy, cx = rng.uniform(0.35, 0.65, 2)
        ry, rx = rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.25)
        inside = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)[..., None]
        img = np.where(inside, c2, img) + 0.08 * np.sin(xx * rng.uniform(20, 40))[..., None]
        out[i] = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("gan_losses_faces")
    for i, im in enumerate(_structured(24)):
        save_png(d / f"{i:03d}.png", im)
    return d


@pytest.fixture(autouse=True)
def _one_thread(tmp_path, monkeypatch):
    """One thread (these tiny models only lose time to a second one), and an image cache of their own."""
    monkeypatch.setenv("MIMIC_CACHE", str(tmp_path / "cache"))  # the image cache of these throwaway folders
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def quick_export(monkeypatch):
    """Exports recalibrate batch norm on 2 batches in place of 100 (the export's time, not its code path)."""
    import functools

    from mimic.priors import train

    monkeypatch.setattr(train, "recalibrate_bn", functools.partial(train.recalibrate_bn, batches=2))


def test_laplacian_pyramid_matches_opencv():
    import cv2

    x = _structured(2).astype(np.float64)
    pyr = laplacian_pyramid(torch.from_numpy(x).permute(0, 3, 1, 2), 3)
    assert [p.shape[-1] for p in pyr] == [64, 32, 16]
    down = cv2.pyrDown(x[0])
    np.testing.assert_allclose(pyr[2][0].permute(1, 2, 0).numpy(), cv2.pyrDown(down), atol=1e-9)
    np.testing.assert_allclose(pyr[0][0].permute(1, 2, 0).numpy(), x[0] - cv2.pyrUp(down), atol=1e-9)
    rebuilt = pyr[1][0].permute(1, 2, 0).numpy() + cv2.pyrUp(pyr[2][0].permute(1, 2, 0).numpy())
    np.testing.assert_allclose(rebuilt, down, atol=1e-9)


def test_sliced_wasserstein_separates_and_is_deterministic():
    import cv2

    x = _structured(16, seed=1)
    blurred = np.stack([cv2.GaussianBlur(im, (5, 5), 1.5) for im in x])
    # brighter by 20 levels, plus noise of sigma 12
    shifted = np.clip(x + 20.0 + np.random.default_rng(2).normal(0, 12, x.shape), 0, 255).astype(np.uint8)
    swd = lambda a, b, s=0: sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(s))  # noqa: E731
    self_d = swd(x, x)  # the same images, other patches and directions per level
    assert self_d.shape == (3,) and (self_d > 0).all()
    for other, level in ((blurred, 1), (shifted, 2)):
        d = swd(x, other)
        # the average, the finest level (both lose or gain fine detail) and the level the change shows in: the blur
        # at 32 too, the shift in the low-pass residual at 16 (patches normalised with the real set's statistics)
        assert d.mean() > 3 * self_d.mean() and d[0] > 5 * self_d[0] and d[level] > 2.5 * self_d[level], (self_d, d)
    np.testing.assert_array_equal(swd(x, blurred), swd(x, blurred))
    assert not np.array_equal(swd(x, blurred), swd(x, blurred, s=1))
    # float tensors in [-1, 1] are the same images
    np.testing.assert_allclose(swd(torch.from_numpy(x).permute(0, 3, 1, 2) / 127.5 - 1, blurred), swd(x, blurred),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        swd(x, x[:8])
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein(x, x, generator=torch.Generator(), projections=0)


def test_prior_report_measures_the_images_it_is_given(tiny_prior_dir):
    from mimic.engine import MimicConfig
    from mimic.priors.report import prior_report

    x = _structured(3)
    q = prior_report(tiny_prior_dir, n=2, images=(x, "three given images"), cfg=MimicConfig(warm_steps=2, T=0),
                     progress=False)
    assert q["heldout_source"] == "three given images" and q["n_images"] == 2 and np.isfinite(q["d_auc"])


def test_bench_end_to_end_keeps_rows_and_refuses_a_smaller_budget(tmp_path, folder, quick_export):
    logs = []
    res = bench_gan_losses(tmp_path, losses=("dcgan", "wgan-gp"), data=folder, quick=True, log=logs.append, **TINY)
    rows = {r["loss"]: r for r in res["results"]}
    assert list(rows) == ["dcgan", "wgan-gp"]
    assert rows["dcgan"]["g_steps"] == rows["wgan-gp"]["g_steps"] == 4 and rows["wgan-gp"]["d_steps"] == 20
    assert rows["wgan-gp"]["n_critic"] == 5 and rows["wgan-gp"]["options"].startswith("n_critic 5")
    for r in rows.values():
        assert r["n_images"] == 4 and r["swd_levels"] == [64, 32, 16] and len(r["swd_x1e3"]) == 3
        assert np.isfinite([r["projection_psnr_mean"], r["projection_ssim_mean"], r["swd_avg_x1e3"]]).all()
        assert 0 <= r["d_auc"] <= 1 and r["train_seconds"] > 0
        assert (tmp_path / r["run"] / "generator.safetensors").exists()
    s = json.loads((tmp_path / "gan_losses.json").read_text())["settings"]
    assert s["budget"] == {"g_steps": 4} and s["seed"] == 0 and s["torch"] == torch.__version__ and s["hardware"]
    assert s["split"]["test"] == {"n": 4, "first": "020.png", "last": "023.png"} and s["split"]["train"]["n"] == 16
    md = (tmp_path / "gan_losses.md").read_text()
    assert md.startswith("| loss | options | G steps | train minutes | G weights | projection PSNR (dB) |")
    # 4 generator steps: far below the moving average's horizon, so the raw generator is measured (auto)
    for r in rows.values():
        assert r["generator_weights"] == "raw"
        assert json.loads((tmp_path / r["run"] / "config.json").read_text())["generator_weights"] == "raw"
    assert "| dcgan | n_critic 1 | 4 |" in md and "| wgan-gp | n_critic 5, D layer norm | 4 |" in md
    assert "Budget: 4 generator steps per loss" in md
    grid = read_image(tmp_path / "samples.png")
    assert grid.shape[0] == 2 * (64 + 2) + 2 and grid.shape[1] == 90 + 8 * (64 + 2) + 2
    # a re-run with one loss: nothing is trained or measured again, the other loss's row is kept
    ckpt = tmp_path / "runs" / "dcgan" / "checkpoint.pt"
    mtime = ckpt.stat().st_mtime_ns
    again = bench_gan_losses(tmp_path, losses=("dcgan",), data=folder, quick=True, log=logs.append, **TINY)
    assert again["results"] == res["results"] and ckpt.stat().st_mtime_ns == mtime
    assert read_image(tmp_path / "samples.png").shape == grid.shape
    # a budget below what a run holds is refused (one line naming it)
    with pytest.raises(ValueError, match="more than the budget steps=2"):
        bench_gan_losses(tmp_path, losses=("dcgan",), data=folder, steps=2, log=logs.append, **TINY)
    # the moving average asked for: measured and recorded as such
    ema = bench_gan_losses(tmp_path / "e", losses=("dcgan",), data=folder, quick=True, weights="ema",
                           log=logs.append, **TINY)
    assert ema["results"][0]["generator_weights"] == "ema" and ema["settings"]["weights"] == "ema"
    with pytest.raises(ValueError, match="weights must be one of auto, ema, raw"):
        bench_gan_losses(tmp_path, losses=("dcgan",), data=folder, quick=True, weights="best", **TINY)


def test_train_for_budget_in_seconds_resumes_in_whole_generator_steps(tmp_path):
    cfg = TrainConfig(epochs=1_000_000, batch_size=4, flip=False, ngf=8, ndf=8, n_critic=2)
    x = _structured(40)
    a = train_for_budget(tmp_path, cfg, x, seconds=0.2, log=lambda m: None)  # a first chunk: 10 G steps
    assert a["train_seconds"] >= 0.2 and a["d_steps"] == 2 * a["g_steps"] and a["g_steps"] >= 10
    assert train_for_budget(tmp_path, cfg, x, seconds=0.2, log=lambda m: None) == a  # used: nothing more
    # a larger budget continues, in chunks sized by the time per step, to whole generator steps
    b = train_for_budget(tmp_path, cfg, x, seconds=a["train_seconds"] + 0.5, log=lambda m: None)
    assert b["train_seconds"] >= a["train_seconds"] + 0.5 and b["g_steps"] > a["g_steps"]
    assert b["d_steps"] == 2 * b["g_steps"]
    with pytest.raises(ValueError, match="one budget"):
        train_for_budget(tmp_path, cfg, x, steps=3, seconds=1.0)


def test_cli_validates_and_forwards(tmp_path, monkeypatch):
    r = CliRunner().invoke(cli, ["bench", "gan-losses", "--out", str(tmp_path), "--losses", "dcgan,wgan"])
    assert r.exit_code == 2 and "wgan" in r.output and "dcgan, lsgan, wgan-gp, hinge" in r.output
    r = CliRunner().invoke(cli, ["bench", "gan-losses", "--out", str(tmp_path), "--steps", "5", "--minutes", "1"])
    assert r.exit_code == 2 and "--minutes" in r.output and "--steps" in r.output
    seen = {}

    def fake(out, **kw):
        seen.update(kw)
        (out / "gan_losses.md").write_text("| loss |\n")

    monkeypatch.setattr("mimic.bench.gan_losses.bench_gan_losses", fake)
    r = CliRunner().invoke(cli, ["bench", "gan-losses", "--out", str(tmp_path), "--losses", "hinge,lsgan", "--minutes",
                                 "2.5", "--n", "50", "--spectral-norm", "--attention", "--quick", "--weights", "raw"])
    assert r.exit_code == 0, r.output
    assert "| loss |" in r.output
    assert seen["losses"] == ("hinge", "lsgan") and seen["minutes"] == 2.5 and seen["steps"] is None
    assert seen["n"] == 50 and seen["spectral_norm"] and seen["attention"] and seen["quick"]
    assert seen["weights"] == "raw"
