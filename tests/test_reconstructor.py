"""The trained reconstructor (Pajot et al.'s unsupervised reconstruction, and its paired reference): training,
bit-exact resume, the exported folder, and recovery through the API and the folder runner."""
import json

import numpy as np
import pytest
import torch

from mimic import recover
from mimic.corruptions import get_corruption
from mimic.inputs import InputError
from mimic.io import save_png, to_tensor, to_uint8
from mimic.metrics import psnr
from mimic.priors import PriorError
from mimic.reconstructor import ReconstructorConfig, load_reconstructor, train_reconstructor


def _cfg(**kw):
    base = dict(corruption="patch_band", epochs=2, batch_size=4, width=8, n_val=4, ckpt_every=1000)
    return ReconstructorConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, faces):
    out = tmp_path_factory.mktemp("uair")
    summary = train_reconstructor(None, out, _cfg(), train_images=faces[:12], val_images=faces[12:],
                                  progress=False)
    return out, summary


def _observe(faces, name="patch_band", seed=0):
    return to_uint8(get_corruption(name)(to_tensor(faces), generator=torch.Generator().manual_seed(seed)))


def test_training_writes_history_samples_and_a_verified_reconstructor(trained):
    out, summary = trained
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    for h in hist:
        assert all(np.isfinite(h[k]) for k in ("loss_d", "loss_adv", "loss_lik", "val_mse"))
    assert (out / "samples" / "epoch_001.png").exists() and (out / "samples" / "epoch_002.png").exists()
    card = json.loads((out / "reconstructor" / "card.json").read_text())
    assert set(card["sha256"]) == {"reconstructor.safetensors"}
    assert card["training"]["corruption"] == "patch_band" and card["training"]["variant"] == "unsupervised"
    rc = load_reconstructor(out)  # the run folder or its reconstructor/ folder
    assert rc.config["c_in"] == 3 and rc.config["residual"] is True


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, faces):
    kw = dict(train_images=faces[:12], val_images=faces[12:], progress=False)
    train_reconstructor(None, tmp_path / "a", _cfg(val_every=2), **kw)
    part = train_reconstructor(None, tmp_path / "b", _cfg(val_every=2), max_steps=4, **kw)
    assert part["stopped"]
    train_reconstructor(None, tmp_path / "b", _cfg(val_every=2), resume=True, **kw)
    a = (tmp_path / "a" / "reconstructor" / "reconstructor.safetensors").read_bytes()
    b = (tmp_path / "b" / "reconstructor" / "reconstructor.safetensors").read_bytes()
    assert a == b
    # the learning curve: every 2 steps within an epoch and at each epoch end (3 steps per epoch), once each
    curve = json.loads((tmp_path / "b" / "val_curve.json").read_text())
    assert [c["step"] for c in curve] == [2, 3, 4, 6]
    assert curve == json.loads((tmp_path / "a" / "val_curve.json").read_text())
    card = json.loads((tmp_path / "b" / "reconstructor" / "card.json").read_text())
    assert card["training"]["val_curve"] == curve and card["training"]["steps"] == 6
    with pytest.raises(ValueError, match="other settings"):
        train_reconstructor(None, tmp_path / "b", _cfg(lam_lik=0.5), resume=True, **kw)


def test_paired_reference_learns_to_fill_the_band(tmp_path, faces):
    # supervised on (observation, clean) pairs, the network must beat the observation it starts from
    y = _observe(faces[12:], seed=1)
    train_reconstructor(None, tmp_path, _cfg(variant="paired", epochs=8, width=16, lr_g=2e-3), train_images=faces[:12],
                        val_images=faces[12:], progress=False)
    rc = load_reconstructor(tmp_path)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist[-1]["val_mse"] < hist[0]["val_mse"]
    assert psnr(rc.recover_uint8(y), faces[12:]).mean() > psnr(y, faces[12:]).mean()


def test_recover_with_a_reconstructor(trained, faces):
    out, _ = trained
    y = _observe(faces[:5])
    r = recover(y, reconstructor=out)
    assert r.method == "reconstructor" and r.images.shape == (5, 64, 64, 3)
    assert np.array_equal(r.images, load_reconstructor(out).recover_uint8(y))  # one forward pass, nothing else
    with pytest.raises(InputError, match="1-channel observation"):
        recover(y[..., :1], reconstructor=out)


def test_altered_or_unknown_reconstructors_are_refused(trained, tmp_path):
    out, _ = trained
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(out / "reconstructor", bad)
    w = bad / "reconstructor.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(PriorError, match="sha256 mismatch"):
        load_reconstructor(bad)
    with pytest.raises(PriorError, match="unknown reconstructor"):
        load_reconstructor("no-such-reconstructor")


def test_folder_run_with_a_reconstructor_resumes_and_refuses_another(trained, faces, tmp_path):
    from mimic.runner import recover_folder

    out, _ = trained
    inp = tmp_path / "in"
    for i, im in enumerate(_observe(faces[:6])):
        save_png(inp / f"{i}.png", im)
    res = recover_folder(inp, tmp_path / "out", reconstructor=out, batch_size=4, progress=False)
    assert res.done == 6
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["settings"]["method"] == "reconstructor" and len(rep["images"]) == 6
    assert rep["settings"]["reconstructor"]["sha256"]
    again = recover_folder(inp, tmp_path / "out", reconstructor=out, batch_size=4, progress=False)
    assert again.done == 0 and again.resumed == 6
    with pytest.raises(InputError, match="method"):  # a MimicGAN run into the same folder: settings differ
        recover_folder(inp, tmp_path / "out", batch_size=4, progress=False)


def test_config_is_validated():
    with pytest.raises(ValueError, match="variant"):
        ReconstructorConfig(variant="semi")
    with pytest.raises(ValueError, match="lr_g"):
        ReconstructorConfig(lr_g=float("nan"))
    with pytest.raises(Exception, match="patch_band"):  # an unknown corruption lists the valid ones
        ReconstructorConfig(corruption="no_such_corruption")


def test_cli_trains_resumes_and_recovers(tmp_path, faces):
    from click.testing import CliRunner

    from mimic.cli.main import cli

    data = tmp_path / "faces"
    for i, im in enumerate(faces):
        save_png(data / f"{i:03d}.png", im)
    base = ["train", "reconstructor", "--corruption", "remove_pixel", "--params", "p=0.95", "--data", str(data),
            "--out", str(tmp_path / "run"), "--holdout", "4", "--epochs", "1", "--batch-size", "4", "--width", "8"]
    r = CliRunner().invoke(cli, base + ["--max-steps", "1"])
    assert r.exit_code == 0 and "resume with --resume" in r.output
    r = CliRunner().invoke(cli, base + ["--resume"])
    assert r.exit_code == 0 and "reconstructor in" in r.output
    assert load_reconstructor(tmp_path / "run").config["corruption_params"] == {"p": 0.95}
    bad = CliRunner().invoke(cli, base[:5] + ["p=", *base[6:]])
    assert bad.exit_code == 2 and "--params" in bad.output
    obs = tmp_path / "obs"
    for i, im in enumerate(_observe(faces[:3], "remove_pixel")):
        save_png(obs / f"{i}.png", im)
    r = CliRunner().invoke(cli, ["recover", str(obs), "--out", str(tmp_path / "rec"), "--reconstructor",
                                 str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "rec" / "recovered").glob("*.png"))) == 3


def test_bench_reconstruct_reports_a_trained_reconstructor_and_its_training(trained, faces, tmp_path):
    from mimic.bench.reconstruct import bench_reconstruct

    out, summary = trained
    folder = tmp_path / "faces"
    for i, f in enumerate(faces[:4]):
        save_png(folder / f"{i:02d}.png", f)
    (tmp_path / "rc").mkdir()
    (tmp_path / "rc" / "patch_band").symlink_to(out, target_is_directory=True)
    res = bench_reconstruct(tmp_path / "b", corruptions=("patch_band",), methods=("uair", "uair_paired"), n=4,
                            data=folder, device="cpu", quick=True, reconstructors=tmp_path / "rc", log=lambda *a: None)
    (row,) = res["results"]  # no paired network in the folder: its row is skipped, not invented
    assert row["method"] == "uair" and row["n"] == 4 and row["seconds"] > 0
    rc = row["reconstructor"]
    assert rc["steps"] == summary["global_step"] == 2 * (12 // 4) and rc["batch_size"] == 4
    assert len(rc["val_mse_by_epoch"]) == 2
    md = (tmp_path / "b" / "reconstruct.md").read_text()
    assert "patch_band uair: 2 epoch(s), 6 steps of batch 4" in md


def test_shipping_a_reconstructor_makes_it_loadable_by_name(trained, tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    from mimic.reconstructor import list_reconstructors

    spec = importlib.util.spec_from_file_location(
        "ship_prior", Path(__file__).resolve().parent.parent / "tools" / "ship_prior.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    out, _ = trained
    monkeypatch.setenv("MIMIC_PRETRAINED", str(tmp_path))
    ship.ship_reconstructor(out, "patch_band")
    assert list_reconstructors() == ["patch_band"]
    rc = load_reconstructor("patch_band")
    assert rc.name == "patch_band" and "non-commercial" in rc.card["terms"]
    assert (tmp_path / "reconstructors" / "patch_band" / "samples.png").exists()
    # weights that do not match their card are not shipped
    w = out / "reconstructor" / "reconstructor.safetensors"
    good = w.read_bytes()
    try:
        w.write_bytes(good[:-8] + bytes(8))
        with pytest.raises(SystemExit, match="does not match its card"):
            ship.ship_reconstructor(out, "other")
    finally:
        w.write_bytes(good)
