import json

import numpy as np
import pytest
import torch
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


def _fast_cfg():
    from mimic.engine import MimicConfig

    return MimicConfig(warm_steps=3, T=1, T1=1, T2=1)


def _examples_clean():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "examples" / "clean"


def test_prior_report_writes_card_only_into_the_given_folder(tiny_prior_dir, tmp_path):
    import shutil

    d = tmp_path / "p"
    shutil.copytree(tiny_prior_dir, d)
    before = {f.name: f.read_bytes() for f in d.iterdir()}
    q = prior_report(d, data=_examples_clean(), n=4, cfg=_fast_cfg(), progress=False)
    assert q["n_images"] == 4 and np.isfinite(q["projection_psnr_mean"]) and 0 <= q["d_auc"] <= 1
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before  # nothing written by default
    c = tmp_path / "card"
    q = prior_report(d, data=_examples_clean(), n=4, cfg=_fast_cfg(), progress=False, card_dir=c)
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before  # nor into the prior's folder with card_dir
    card = json.loads((c / "card.json").read_text())
    assert card["quality"]["projection_psnr_mean"] == q["projection_psnr_mean"]
    assert card["sha256"] == json.loads((d / "card.json").read_text())["sha256"]
    assert (c / "samples.png").exists() and (c / "projection.png").exists()
    assert "projection_psnr_mean" in (c / "README.md").read_text()


def test_prior_report_command_prints_and_leaves_the_prior_folder_alone(tiny_prior_dir, tmp_path, monkeypatch):
    import shutil

    from mimic.priors import report

    monkeypatch.setitem(report.PROJECTION_CONFIGS, "dcgan64", _fast_cfg())
    d = tmp_path / "p"
    shutil.copytree(tiny_prior_dir, d)
    before = {f.name: f.read_bytes() for f in d.iterdir()}
    r = CliRunner().invoke(cli, ["prior-report", str(d), "--data", str(_examples_clean()), "--n", "2",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "projection_psnr_mean" in r.output
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before
    r = CliRunner().invoke(cli, ["prior-report", str(d), "--data", str(_examples_clean()), "--n", "2",
                                 "--device", "cpu", "--json", "-"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_images"] == 2
    r = CliRunner().invoke(cli, ["prior-report", str(d), "--data", str(_examples_clean()), "--n", "2",
                                 "--device", "cpu", "--write-card", str(tmp_path / "card")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "card" / "card.json").read_text())["quality"]["n_images"] == 2
    assert {f.name: f.read_bytes() for f in d.iterdir()} == before


@pytest.mark.parametrize("where", ["pretrained", "pretrained/celeba64", "pretrained/celeba64/sub", "package"])
def test_prior_report_refuses_to_write_into_the_shipped_priors(where, tmp_path):
    from pathlib import Path

    import mimic
    from mimic.priors import pretrained_dir

    repo = Path(mimic.__file__).resolve().parent.parent
    target = Path(mimic.__file__).resolve().parent / "pretrained" if where == "package" else repo / where
    before = {f: f.read_bytes() for f in pretrained_dir().rglob("*") if f.is_file()}
    r = CliRunner().invoke(cli, ["prior-report", "celeba64", "--n", "2", "--device", "cpu", "--write-card", str(target)])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "refusing to write a model card" in err and str(target) in err
    assert {f: f.read_bytes() for f in pretrained_dir().rglob("*") if f.is_file()} == before
    if where == "package":
        assert not target.exists()


def test_ship_prior_installs_a_card_measured_on_the_shipped_weights(tiny_prior_dir, tmp_path, monkeypatch):
    """tools/ship_prior.py --card: the way a measured card reaches pretrained/ now that prior-report never writes there."""
    import shutil
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))  # the repository's tools/
    from tools import ship_prior

    shipped = tmp_path / "pretrained"
    shutil.copytree(tiny_prior_dir, shipped / "tiny")
    monkeypatch.setattr(ship_prior, "pretrained_dir", lambda: shipped)
    c = tmp_path / "card"
    prior_report(shipped / "tiny", data=_examples_clean(), n=2, cfg=_fast_cfg(), progress=False, card_dir=c)
    ship_prior.ship_card(c, "tiny")
    assert json.loads((shipped / "tiny" / "card.json").read_text())["quality"]["n_images"] == 2
    assert (shipped / "tiny" / "projection.png").read_bytes() == (c / "projection.png").read_bytes()
    other = tmp_path / "other"  # a card measured on other weights is refused
    shutil.copytree(c, other)
    card = json.loads((other / "card.json").read_text())
    card["sha256"]["generator.safetensors"] = "0" * 64
    (other / "card.json").write_text(json.dumps(card))
    with pytest.raises(SystemExit, match="not measured on"):
        ship_prior.ship_card(other, "tiny")


def _copy_prior(src, dst, card=None):
    import shutil

    shutil.copytree(src, dst)
    if card is None:
        (dst / "card.json").unlink()
    else:
        (dst / "card.json").write_text(json.dumps(card))
    return dst


@pytest.mark.parametrize("card", [None, {}, {"summary": "no sums"}, "generator only missing"])
def test_unverified_prior_is_refused_unless_trusted(tiny_prior_dir, tmp_path, card):
    from mimic.priors import PriorError, load_prior

    if card == "generator only missing":
        sums = json.loads((tiny_prior_dir / "card.json").read_text())["sha256"]
        card = {"sha256": {"discriminator.safetensors": sums["discriminator.safetensors"]}}
    d = _copy_prior(tiny_prior_dir, tmp_path / "p", card)
    with pytest.raises(PriorError) as e:
        load_prior(d)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and str(d / "generator.safetensors") in msg and "trust_unverified=True" in msg
    p = load_prior(d, trust_unverified=True)
    assert p.G(torch.zeros(1, 100)).shape == (1, 3, 64, 64)


def test_unverified_classifier_is_refused_unless_trusted(tiny_fmnist_dirs, tmp_path):
    from mimic.priors import PriorError, load_classifier

    d = _copy_prior(tiny_fmnist_dirs[1], tmp_path / "clf")
    with pytest.raises(PriorError, match="classifier.safetensors: unverified weights .*trust_unverified=True"):
        load_classifier(d)
    load_classifier(d, trust_unverified=True)


def test_prior_report_command_takes_trust_unverified(tiny_prior_dir, tmp_path, monkeypatch):
    from mimic.priors import report

    monkeypatch.setitem(report.PROJECTION_CONFIGS, "dcgan64", _fast_cfg())
    d = _copy_prior(tiny_prior_dir, tmp_path / "p")
    args = ["prior-report", str(d), "--data", str(_examples_clean()), "--n", "2", "--device", "cpu"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "unverified weights" in r.stderr and "--trust-unverified" in r.stderr
    r = CliRunner().invoke(cli, args + ["--trust-unverified"])
    assert r.exit_code == 0, r.output


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
        q = prior_report(d, n=2, cfg=cfg, progress=False, **kw)
        assert f"held-out {which} split" in q["heldout_source"]
        assert getattr(split, which)[0].name in q["heldout_source"]
    with pytest.raises(ValueError, match="split"):
        prior_report(d, n=2, cfg=cfg, progress=False, split="train")


def test_data_dir_names_data_and_mimic_data_when_the_data_is_missing(tmp_path, monkeypatch):
    """An installed package's default data root (beside site-packages) does not exist: one clear line."""
    import mimic.data
    from mimic.data import DataNotFoundError, data_dir

    monkeypatch.delenv("MIMIC_DATA", raising=False)
    monkeypatch.setattr(mimic.data, "default_data_root", lambda: tmp_path / "site-packages" / "shared" / "data")
    with pytest.raises(DataNotFoundError) as e:
        data_dir("celeba")
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "--data" in msg and "MIMIC_DATA" in msg and "celeba" in msg
    assert isinstance(e.value, FileNotFoundError)
    assert data_dir("celeba", tmp_path) == tmp_path
    with pytest.raises(DataNotFoundError, match="no such folder"):
        data_dir("celeba", tmp_path / "nope")


@pytest.mark.parametrize("prior, extra", [("celeba64", []), ("fmnist28", []), ("celeba64", ["--data", "EMPTY"])])
def test_prior_report_without_data_is_one_line(tmp_path, monkeypatch, prior, extra):
    """Not 'holdout=1000 must be in [0, 0)' nor 'torch.cat(): expected a non-empty list'."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("MIMIC_DATA", str(tmp_path / "nodata"))
    extra = [str(tmp_path / "empty") if a == "EMPTY" else a for a in extra]
    r = CliRunner().invoke(cli, ["prior-report", prior, "--n", "2", "--device", "cpu", *extra])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "--data" in err and ("MIMIC_DATA" in err or "no images" in err), err
    (tmp_path / "nodata" / "celeba").mkdir(parents=True)  # a data folder with too few faces for the split
    if prior == "celeba64" and not extra:
        r = CliRunner().invoke(cli, ["prior-report", prior, "--n", "2", "--device", "cpu"])
        assert r.exit_code == 2 and "MIMIC_DATA" in r.stderr and "holdout" not in r.stderr, r.stderr
