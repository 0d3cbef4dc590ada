import json

import numpy as np
import pytest
from click.testing import CliRunner

from mimic.cli.main import cli
from mimic.priors.report import prior_report, roc_auc


def test_roc_auc():
    assert roc_auc([2, 3], [0, 1]) == 1.0
    assert roc_auc([0, 1], [2, 3]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 2000), rng.normal(0, 1, 2000)
    assert abs(roc_auc(a, b) - 0.76) < 0.03  # Phi(1/sqrt(2))


def test_prior_report_writes_card(tiny_prior_dir, tmp_path):
    import shutil
    from pathlib import Path

    d = tmp_path / "p"
    shutil.copytree(tiny_prior_dir, d)
    clean = Path(__file__).resolve().parent.parent / "examples" / "clean"
    from mimic.engine import MimicConfig

    q = prior_report(d, data=clean, n=4, cfg=MimicConfig(warm_steps=3, T=1, T1=1, T2=1), progress=False)
    assert q["n_images"] == 4 and np.isfinite(q["projection_psnr_mean"]) and 0 <= q["d_auc"] <= 1
    card = json.loads((d / "card.json").read_text())
    assert card["quality"]["projection_psnr_mean"] == q["projection_psnr_mean"]
    assert (d / "samples.png").exists() and (d / "projection.png").exists()
    assert "projection_psnr_mean" in (d / "README.md").read_text()


def test_priors_command_lists_shipped():
    r = CliRunner().invoke(cli, ["priors"])
    assert r.exit_code == 0 and "celeba64" in r.output


def test_prior_report_split_picks_the_held_out_half(tiny_prior_dir, tmp_path):
    """``split="val"`` projects the validation half of the split (choices are made there), the default the test half."""
    import shutil

    from mimic.data import default_data_root, list_images, split_files
    from mimic.engine import MimicConfig

    root = default_data_root() / "celeba"
    if not root.exists():
        pytest.skip("CelebA data not available")
    d = tmp_path / "p"
    shutil.copytree(tiny_prior_dir, d)
    cfg = MimicConfig(warm_steps=2, T=1, T1=1, T2=1)
    split = split_files(list_images(root), holdout=1000)
    for which in ("val", "test"):
        kw = {} if which == "test" else {"split": "val"}
        q = prior_report(d, n=2, cfg=cfg, progress=False, write_card=False, **kw)
        assert f"held-out {which} split" in q["heldout_source"]
        assert getattr(split, which)[0].name in q["heldout_source"]
    with pytest.raises(ValueError, match="split"):
        prior_report(d, n=2, cfg=cfg, progress=False, write_card=False, split="train")
