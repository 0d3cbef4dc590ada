"""End to end with the shipped CelebA prior and the committed demo faces (real weights, real faces)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from mimic import get_corruption, list_priors, load_prior, recover
from mimic.io import read_image, to_tensor, to_uint8
from mimic.metrics import psnr

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHORT = dict(warm_steps=100, T=4, T1=20, T2=15)

pytestmark = pytest.mark.slow  # real weights, real faces: seconds to a minute each on a CPU (CI runs them)


@pytest.fixture(scope="module")
def clean():
    files = sorted((EXAMPLES / "clean").glob("*.png"))[:8]
    return np.stack([read_image(f) for f in files])


def test_shipped_priors_listed_and_verified():
    assert "celeba64" in list_priors()
    p = load_prior("celeba64")
    assert p.resolution == 64 and p.channels == 3 and p.nz == 100
    assert set(p.sha256) == {"generator.safetensors", "discriminator.safetensors", "group_stats.json"}
    assert p.group_stats is not None  # the blind preset's group term needs them
    assert p.card["quality"]["n_images"] >= 200


@pytest.mark.parametrize("task", ["negative", "occlusion"])
def test_real_recovery_beats_observation(task, clean):
    y = to_uint8(get_corruption(task)(to_tensor(clean), generator=torch.Generator().manual_seed(0)))
    r = recover(y, task=task, prior="celeba64", device="cpu", **SHORT)
    obs_psnr = psnr(y, clean).mean()
    rec_psnr = psnr(r.images, clean).mean()
    assert rec_psnr > obs_psnr + 1.0, (rec_psnr, obs_psnr)
    h = r.history[0]["obs"]
    assert h[-1] < h[0]  # the alternation lowers the observation loss



def test_real_gray_blur_clip_detection_helps(clean):
    """gray_blur truncates the bright half of each face: with clip detection (the preset) both MimicGAN and PGD
    recover the real faces better than when the truncated pixels are fitted literally."""
    y = to_uint8(get_corruption("gray_blur")(to_tensor(clean)))
    for method in ("mimic", "pgd"):
        on = psnr(recover(y, task="gray_blur", method=method, prior="celeba64", device="cpu", **SHORT).images, clean)
        off = psnr(recover(y, task="gray_blur", method=method, prior="celeba64", device="cpu", clip=False,
                           **SHORT).images, clean)
        assert on.mean() > off.mean() + 0.5, (method, on.mean(), off.mean())

def test_cli_on_examples(tmp_path):
    from click.testing import CliRunner

    from mimic.cli.main import cli

    res = CliRunner().invoke(cli, ["recover", str(EXAMPLES / "gray_blur"), "--task", "gray_blur", "--out",
                                   str(tmp_path / "o"), "--clean", str(EXAMPLES / "clean"), "--device", "cpu",
                                   "--quiet", "--warm-steps", "50", "--T", "2"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "o" / "recovered").glob("*.png"))) == len(list((EXAMPLES / "gray_blur").glob("*.png")))
    assert "PSNR" in res.output


def test_shipped_classifier_accuracy(fmnist_root):
    from mimic.data import load_fmnist
    from mimic.priors import load_classifier
    from mimic.priors.train import evaluate_classifier

    x, y = load_fmnist(fmnist_root, "test")
    clf = load_classifier("fmnist_classifier")
    acc = evaluate_classifier(clf, to_tensor(x[:3000]), torch.from_numpy(y[:3000]))
    assert acc >= 90.0, acc  # 93.3% on all 10,000 (model card); a subset keeps the test fast


def test_altered_classifier_is_refused(tmp_path):
    import shutil

    from mimic.priors import PriorError, load_classifier, pretrained_dir

    d = tmp_path / "clf"
    shutil.copytree(pretrained_dir() / "fmnist_classifier", d)
    with open(d / "classifier.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(PriorError, match="classifier.safetensors"):
        load_classifier(d)


def test_shipped_fmnist_prior_recovers_negative_blur(fmnist_root):
    from mimic.data import load_fmnist

    p = load_prior("fmnist28")
    assert (p.resolution, p.channels, p.nz) == (28, 1, 100)
    assert p.card["quality"]["n_images"] >= 500 and "classifier_accuracy_projection" in p.card["quality"]
    x, _ = load_fmnist(fmnist_root, "test")
    clean = x[:10]
    y = to_uint8(get_corruption("blur_negative")(to_tensor(clean), generator=torch.Generator().manual_seed(0)))
    r = recover(y, task="blur_negative", device="cpu", batch_size=10, warm_steps=100, T=3, T1=10, T2=20, restarts=1)
    assert r.images.shape == (10, 28, 28, 1)
    assert psnr(r.images, clean).mean() > psnr(y, clean).mean() + 1  # short schedule: 5.7 vs 3.3 dB measured


def test_shipped_fmnist_prior_mimic_beats_pgd_on_dropped_pixels(fmnist_root):
    # the drop_pixels preset's L2 surrogate fit (an L1 fit is degenerate: the per-pixel median is black)
    from mimic.data import load_fmnist

    x, _ = load_fmnist(fmnist_root, "test")
    clean = x[:25]
    y = to_uint8(get_corruption("drop_pixels")(to_tensor(clean), generator=torch.Generator().manual_seed(0)))
    kw = dict(device="cpu", batch_size=25, warm_steps=100, T=3, T1=10, T2=20, restarts=1)
    m = psnr(recover(y, task="drop_pixels", **kw).images, clean).mean()
    p = psnr(recover(y, task="drop_pixels", method="pgd", **kw).images, clean).mean()
    assert m > p + 1 and m > psnr(y, clean).mean()  # measured: 10.2 vs PGD 8.6, observed 9.5 dB


def test_prior_report_on_a_copied_fmnist_prior_includes_the_classifier(fmnist_root, tmp_path):
    """A user's own 28x28 gray prior (a folder path, not the shipped name) gets the class-retention figures."""
    import json
    import shutil

    from click.testing import CliRunner

    from mimic.cli.main import cli
    from mimic.priors import pretrained_dir

    d = tmp_path / "my_fashion_prior"
    shutil.copytree(pretrained_dir() / "fmnist28", d)
    r = CliRunner().invoke(cli, ["prior-report", str(d), "--n", "4", "--json", str(tmp_path / "q.json"),
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    q = json.loads((tmp_path / "q.json").read_text())
    assert q["n_images"] == 4 and 0 <= q["classifier_accuracy_projection"] <= 100
    assert 0 <= q["classifier_accuracy_clean"] <= 100
