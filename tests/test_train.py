import json

import numpy as np
import pytest
import torch

from mimic.priors import load_prior, sha256_file
from mimic.priors.train import TrainConfig, export_prior, train_prior


@pytest.fixture(scope="module")
def data():
    return (np.random.default_rng(0).random((96, 64, 64, 3)) * 255).astype(np.uint8)


def test_train_finite_and_resume_bit_exact(tmp_path, data):
    cfg = TrainConfig(epochs=2, batch_size=16, ckpt_every=4)
    a = train_prior(None, tmp_path / "a", cfg, train_images=data, progress=False)
    assert all(np.isfinite([h["lossD"], h["lossG"]]).all() for h in a["history"])
    assert (tmp_path / "a" / "samples" / "epoch_002.png").exists()
    # interrupted after 7 steps (mid-epoch), then resumed
    s = train_prior(None, tmp_path / "b", cfg, train_images=data, progress=False, max_steps=7)
    assert s["stopped_at_step"] == 7
    train_prior(None, tmp_path / "b", cfg, train_images=data, progress=False, resume=True)
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for k in ("G", "D", "G_ema"):
        for name in sa[k]:
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)


def test_export_and_load(tmp_path, data):
    cfg = TrainConfig(epochs=1, batch_size=32)
    train_prior(None, tmp_path, cfg, train_images=data, progress=False)
    export_prior(tmp_path / "checkpoint.pt", tmp_path / "prior")
    (tmp_path / "prior" / "card.json").write_text(json.dumps({"sha256": {
        f: sha256_file(tmp_path / "prior" / f) for f in ("generator.safetensors", "discriminator.safetensors")}}))
    p = load_prior(tmp_path / "prior")
    x = p.G(torch.zeros(2, 100))
    assert x.shape == (2, 3, 64, 64) and not any(q.requires_grad for q in p.G.parameters())


def test_resume_refuses_other_settings(tmp_path, data):
    train_prior(None, tmp_path, TrainConfig(epochs=1, batch_size=32), train_images=data, progress=False, max_steps=1)
    with pytest.raises(ValueError, match="other settings"):
        train_prior(None, tmp_path, TrainConfig(epochs=1, batch_size=16), train_images=data, progress=False, resume=True)


def test_keep_epochs_keeps_each_epoch_and_may_be_switched_on_when_resuming(tmp_path, data):
    cfg = TrainConfig(epochs=1, batch_size=32)
    train_prior(None, tmp_path, cfg, train_images=data, progress=False)
    assert not list(tmp_path.glob("checkpoint_ep*.pt"))  # off by default
    # resuming with more epochs and keep_epochs on is not "other settings"
    train_prior(None, tmp_path, TrainConfig(epochs=3, batch_size=32, keep_epochs=True), train_images=data,
                progress=False, resume=True)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_ep*.pt")) == ["checkpoint_ep002.pt", "checkpoint_ep003.pt"]
    ep2 = torch.load(tmp_path / "checkpoint_ep002.pt", weights_only=False)
    last = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ep2["epoch"] == 2 and last["epoch"] == 3
    k = next(iter(ep2["G"]))
    assert not torch.equal(ep2["G"][k], last["G"][k])  # a copy of epoch 2, not of the last checkpoint
    assert not list(tmp_path.glob(".*.tmp"))


def test_exported_prior_carries_its_sha256_and_loads_verified(tmp_path):
    """export_prior (what `mimic train prior` ends with) writes the card's sha256, so that its output loads without
    --trust-unverified, and keeps the rest of an existing card."""
    from mimic.priors.models import DCGAN64Discriminator, DCGAN64Generator

    ckpt = {"G": DCGAN64Generator().state_dict(), "D": DCGAN64Discriminator().state_dict(),
            "config": {"arch": "dcgan64", "nz": 100, "seed": 0}, "epoch": 1, "global_step": 1, "elapsed": 0.0}
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    out = tmp_path / "prior"
    out.mkdir()
    (out / "card.json").write_text(json.dumps({"summary": "mine"}))
    export_prior(tmp_path / "checkpoint.pt", out, use_ema=False)
    card = json.loads((out / "card.json").read_text())
    assert card["summary"] == "mine"
    assert card["sha256"]["generator.safetensors"] == sha256_file(out / "generator.safetensors")
    assert load_prior(out).sha256 == card["sha256"]
