"""GAN losses of the prior trainer (dcgan, lsgan, wgan-gp, hinge), spectral norm and self-attention."""
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mimic.io import to_tensor
from mimic.priors import load_prior
from mimic.priors.losses import GP_WEIGHT, d_loss, g_loss, gradient_penalty, list_losses
from mimic.priors.models import SelfAttention, build_gan, init_dcgan_weights
from mimic.priors.train import TrainConfig, export_prior, network_options, recalibrate_bn, train_prior

TINY = dict(ngf=8, ndf=8, nz=16, batch_size=4, flip=False, ckpt_every=1000)  # a quick dcgan64
# the four losses, and hinge with spectral norm and self-attention in G and D
VARIANTS = [("dcgan", False, False), ("lsgan", False, False), ("wgan-gp", False, False), ("hinge", False, False),
            ("hinge", True, True)]
IDS = ["dcgan", "lsgan", "wgan-gp", "hinge", "hinge-sn-attention"]


@pytest.fixture(scope="module")
def images():
    return (np.random.default_rng(0).random((8, 64, 64, 3)) * 255).astype(np.uint8)


def _critic_objective(kind, D, real, fake):
    loss = d_loss(kind, D(real), D(fake))
    if kind in GP_WEIGHT:
        loss = loss + GP_WEIGHT[kind] * gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(3))
    return loss


def test_list_losses_and_defaults():
    assert list_losses() == ["dcgan", "lsgan", "wgan-gp", "hinge"]
    cfg = TrainConfig()
    assert (cfg.loss, cfg.n_critic, cfg.spectral_norm, cfg.attention, cfg.ngf, cfg.ndf) == ("dcgan", 1, False, False,
                                                                                           64, 64)


def test_losses_match_their_definitions():
    r, f = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sp = torch.nn.functional.softplus
    assert torch.allclose(d_loss("dcgan", r, f), sp(-r).mean() + sp(f).mean())
    assert torch.allclose(g_loss("dcgan", f), sp(-f).mean())
    assert torch.allclose(d_loss("lsgan", r, f), 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean())
    assert torch.allclose(g_loss("lsgan", f), 0.5 * ((f - 1) ** 2).mean())
    assert torch.allclose(d_loss("wgan-gp", r, f), f.mean() - r.mean())
    assert torch.allclose(d_loss("hinge", r, f), torch.tensor((0 + 2) / 2 + (1.5 + 0) / 2))
    for k in ("wgan-gp", "hinge"):
        assert torch.allclose(g_loss(k, f), -f.mean())
    # the penalty of a linear critic is (|w| - 1)^2 wherever it is taken
    w = torch.full((1, 3, 2, 2), 0.25)
    lin = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    gp = gradient_penalty(lin, torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2))
    assert torch.allclose(gp, torch.tensor((0.25 * 12 ** 0.5 - 1) ** 2))


@pytest.mark.parametrize("kind,sn,attention", VARIANTS, ids=IDS)
def test_critic_then_generator_learn_on_a_fixed_batch(kind, sn, attention, images):
    """With G frozen, a few D steps lower D's objective on a fixed batch and score the real images above the fakes;
    then, D frozen, a few G steps lower G's loss on fixed z and raise D's score of the fakes. (WGAN-GP's first steps
    mostly shrink the penalty, about 20 at the DCGAN initialisation: its score gap rises from the 5th step on.)"""
    torch.manual_seed(0)
    G, D = build_gan("dcgan64", nz=16, ngf=8, ndf=8, d_norm="layer" if kind == "wgan-gp" else "batch",
                     spectral_norm=sn, attention=attention)
    init_dcgan_weights(G), init_dcgan_weights(D)
    n, steps = (4, 6) if attention else (8, 12)  # attention at 32x32 is the slow part on a CPU
    real = to_tensor(images[:n])
    z = torch.rand(n, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        fake = G(z)
    opt = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))

    def gap():
        with torch.no_grad():
            return float(D(real).mean() - D(fake).mean())

    before, gap0 = float(_critic_objective(kind, D, real, fake).detach()), gap()
    for _ in range(steps):
        loss = _critic_objective(kind, D, real, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, gap1 = float(_critic_objective(kind, D, real, fake).detach()), gap()
    assert np.isfinite([before, after]).all()
    assert after < 0.5 * before, (before, after)
    assert gap1 > max(gap0, 0.0), (gap0, gap1)  # real scored above fake, more than before

    D.requires_grad_(False)
    optG = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))

    def g_now():
        with torch.no_grad():
            s = D(G(z))
            return float(g_loss(kind, s)), float(s.mean())

    (gb, sb) = g_now()
    for _ in range(steps):
        loss = g_loss(kind, D(G(z)))
        optG.zero_grad()
        loss.backward()
        optG.step()
    ga, sa = g_now()
    assert ga < gb and sa > sb, (gb, ga, sb, sa)


@pytest.mark.parametrize("kind", list_losses())
def test_train_prior_runs_each_loss(kind, images, tmp_path):
    """(hinge with spectral norm and attention: in the export test below)"""
    n_critic = 2 if kind == "wgan-gp" else 1
    cfg = TrainConfig(epochs=1, loss=kind, n_critic=n_critic, **TINY)
    s = train_prior(None, tmp_path, cfg, train_images=images, progress=False)
    h = s["history"][0]
    assert np.isfinite([h["lossD"], h["lossG"]]).all() and h["steps"] == 2
    st = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert st["config"]["loss"] == kind and st["config"]["n_critic"] == n_critic
    # D learns every step, G (and its moving average) every n_critic-th
    assert int(st["optD"]["state"][0]["step"]) == 2 and int(st["optG"]["state"][0]["step"]) == 2 // n_critic
    d_keys = " ".join(st["D"])
    assert ("running_mean" in d_keys) == (kind != "wgan-gp")  # no batch norm in WGAN-GP's critic
    assert "parametrizations" not in d_keys and "gamma" not in d_keys and "gamma" not in " ".join(st["G"])


def test_dcgan_default_unchanged(tmp_path):
    """The default loss is today's DCGAN: the losses of the code before the other losses were added (stored from it:
    dcgan64, 8 random images, one step of batch 8; one step, as the following Adam steps amplify the last bits that
    the number of CPU threads changes), and the same weights with loss="dcgan" spelled out."""
    x = (np.random.default_rng(0).random((8, 64, 64, 3)) * 255).astype(np.uint8)
    s = train_prior(None, tmp_path / "a", TrainConfig(epochs=1, batch_size=8), train_images=x, progress=False)
    h = s["history"][0]
    assert h["lossD"] == pytest.approx(1.961742639541626, rel=1e-5)  # D's loss at the initial weights
    assert h["lossG"] == pytest.approx(6.985767364501953, rel=1e-5)  # G's, after D's first step
    small = (np.random.default_rng(1).random((8, 64, 64, 3)) * 255).astype(np.uint8)
    train_prior(None, tmp_path / "b", TrainConfig(epochs=1, **TINY), train_images=small, progress=False)
    train_prior(None, tmp_path / "c", TrainConfig(epochs=1, loss="dcgan", **TINY), train_images=small, progress=False)
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    sc = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=False)
    for k in ("G", "D", "G_ema"):
        assert sb[k].keys() == sc[k].keys()
        assert all(torch.equal(sb[k][name], sc[k][name]) for name in sb[k]), k


def test_bad_settings_are_one_line_errors(images, tmp_path):
    with pytest.raises(ValueError, match=r"^unknown loss 'nope'; valid: dcgan, lsgan, wgan-gp, hinge$"):
        train_prior(None, tmp_path, TrainConfig(loss="nope", **TINY), train_images=images, progress=False)
    with pytest.raises(ValueError, match=r"^unknown loss 'nope'; valid: dcgan, lsgan, wgan-gp, hinge$"):
        d_loss("nope", torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"^n_critic must be an integer >= 1, got 0$"):
        train_prior(None, tmp_path, TrainConfig(n_critic=0, **TINY), train_images=images, progress=False)
    with pytest.raises(ValueError, match=r"^attention is only built for arch 'dcgan64'"):
        train_prior(None, tmp_path, TrainConfig(arch="fmnist28", attention=True), train_images=images,
                    progress=False)
    with pytest.raises(ValueError, match=r"^unknown norm 'group'; valid: batch, layer, none$"):
        build_gan("dcgan64", d_norm="group")
    assert not (tmp_path / "checkpoint.pt").exists()


def test_resume_refuses_other_loss_spectral_norm_or_attention(images, tmp_path):
    cfg = TrainConfig(epochs=1, **TINY)
    train_prior(None, tmp_path, cfg, train_images=images, progress=False, max_steps=1)
    for change in ({"loss": "hinge"}, {"spectral_norm": True}, {"attention": True}, {"n_critic": 2}):
        other = TrainConfig(epochs=1, **TINY, **change)
        with pytest.raises(ValueError, match=f"other settings.*'{next(iter(change))}'"):
            train_prior(None, tmp_path, other, train_images=images, progress=False, resume=True)
    # a checkpoint from before the options existed resumes as the defaults it was made with
    st = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    for k in ("loss", "n_critic", "spectral_norm", "attention"):
        del st["config"][k]
    torch.save(st, tmp_path / "checkpoint.pt")
    s = train_prior(None, tmp_path, cfg, train_images=images, progress=False, resume=True)
    assert s["steps"] == 2


def test_cli_validates_the_options(tmp_path):
    from mimic.cli.main import cli

    def run(*args):
        return CliRunner().invoke(cli, ["train", "prior", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                        *args], catch_exceptions=False)

    r = run("--arch", "dcgan64", "--loss", "nope")
    assert r.exit_code == 2 and "'--loss'" in r.output and "wgan-gp" in r.output
    r = run("--arch", "dcgan64", "--n-critic", "0")
    assert r.exit_code == 2 and "'--n-critic'" in r.output and "must be >= 1" in r.output
    r = run("--arch", "fmnist28", "--attention")
    assert r.exit_code == 2 and "'--attention'" in r.output and "dcgan64" in r.output
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(cli, ["train", "prior", "--help"])
    assert all(o in r.output for o in ("--loss", "--n-critic", "--spectral-norm", "--attention"))


def test_exported_prior_with_attention_and_spectral_norm_loads_and_recovers(images, tmp_path):
    import mimic

    cfg = TrainConfig(epochs=1, loss="hinge", spectral_norm=True, attention=True, **TINY)
    s = train_prior(None, tmp_path / "run", cfg, train_images=images, progress=False)
    assert np.isfinite([s["history"][0]["lossD"], s["history"][0]["lossG"]]).all()
    st = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert st["config"]["spectral_norm"] and st["config"]["attention"]
    assert all("parametrizations.weight" in k for k in st["D"] if k.endswith("weight.original"))
    assert sum(k.endswith("weight.original") for k in st["D"]) == 8  # 5 convolutions + query, key, value
    assert "net.12.gamma" in st["G"] and "net.2.gamma" in st["D"]  # attention at 32x32 in both
    conf = export_prior(tmp_path / "run" / "checkpoint.pt", tmp_path / "prior", use_ema=False)
    saved = json.loads((tmp_path / "prior" / "config.json").read_text())
    assert saved == json.loads(json.dumps(conf))
    assert {k: saved[k] for k in ("loss", "ngf", "ndf", "d_norm", "spectral_norm", "attention")} == {
        "loss": "hinge", "ngf": 8, "ndf": 8, "d_norm": "batch", "spectral_norm": True, "attention": True}
    pr = load_prior(tmp_path / "prior", trust_unverified=False)  # export_prior wrote the card's sha256
    assert any(isinstance(m, SelfAttention) for m in pr.G.modules())
    assert any(isinstance(m, SelfAttention) for m in pr.D.modules())
    for k, v in pr.D.state_dict().items():  # D loads as trained, spectral norm's u and v included
        assert torch.equal(v, st["D"][k]), k
    x = pr.G(torch.zeros(2, 16))
    assert x.shape == (2, 3, 64, 64) and pr.D(x).shape == (2,)
    # one short recovery, with D's logits in the objective
    r = mimic.recover(images[:2], prior=pr, device="cpu", warm_steps=1, T=1, T1=1, T2=1, adapt_steps=0,
                      lam_adv=0.1)
    assert r.images.shape == (2, 64, 64, 3) and r.images.dtype == np.uint8
    # the moving-average export re-estimates batch norm in the network with attention
    g = recalibrate_bn(st["G_ema"], st["config"], batches=2, batch_size=4)
    assert g.keys() == st["G_ema"].keys()


def test_exported_wgan_gp_prior_rebuilds_its_layer_norm_critic(images, tmp_path):
    cfg = TrainConfig(epochs=1, loss="wgan-gp", **TINY)
    assert network_options(asdict(TrainConfig(loss="wgan-gp")))["d_norm"] == "layer"
    assert network_options({"arch": "dcgan64", "nz": 100})["d_norm"] == "batch"  # a checkpoint from before losses
    train_prior(None, tmp_path / "run", cfg, train_images=images, progress=False)
    export_prior(tmp_path / "run" / "checkpoint.pt", tmp_path / "prior", use_ema=False)
    pr = load_prior(tmp_path / "prior")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in pr.D.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in pr.D.modules())
    assert pr.D(pr.G(torch.zeros(2, 16))).shape == (2,)
