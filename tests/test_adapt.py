"""Generator adaptation (``MimicConfig.adapt_steps``): per-group copies of G's weights adapted after the alternation."""
import pytest
import torch

from mimic.engine import MimicConfig, solve
from mimic.priors import load_prior

FAST = MimicConfig(warm_steps=4, T=2, T1=3, T2=3, lam_adv=1e-4, lam_I=0.1, lr_s=1e-3, lr_g=1e-2)


@pytest.fixture(scope="module")
def prior(tiny_prior_dir):
    return load_prior(tiny_prior_dir)


def _off_range(S=2, B=3, seed=0):
    """Smooth images that the tiny generator cannot produce (outside its range)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(S, B, 3, 8, 8, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(y.flatten(0, 1), size=64, mode="bilinear").reshape(S, B, 3, 64, 64)


@pytest.mark.parametrize("method", ["mimic", "pgd"])
def test_adaptation_fits_past_the_range_and_leaves_the_prior_alone(prior, method):
    y = _off_range()
    before = {k: v.clone() for k, v in prior.G.state_dict().items()}
    seen = []
    cfg = FAST.replace(adapt_steps=12, lr_adapt=1e-3)
    out = solve(prior.G, prior.D, y, cfg, method=method, generator=torch.Generator().manual_seed(0),
                callback=lambda t, x, fx, h: seen.append(t))
    base = solve(prior.G, prior.D, y, FAST, method=method, generator=torch.Generator().manual_seed(0))
    assert seen == list(range(FAST.T + 1 + 4))  # four reports of the adaptation after the alternation
    assert out.history["obs"].shape == (FAST.T + 1 + 4, 2)
    assert (out.obs_loss.mean(1) < base.obs_loss.mean(1) * 0.8).all()  # every group fits better
    assert out.z.abs().max() <= 1.0 and torch.isfinite(out.x).all()
    for k, v in prior.G.state_dict().items():  # the shared prior is never modified
        assert torch.equal(v, before[k]), k


def test_groups_adapt_their_own_copies(prior):
    """Two groups solved together give what each gives alone: the stacked copies do not mix."""
    y = _off_range(S=2)
    cfg = FAST.replace(adapt_steps=6, lr_adapt=1e-3, inits=("identity",))
    both = solve(prior.G, prior.D, y, cfg, method="pgd", generator=torch.Generator().manual_seed(0))
    one = solve(prior.G, prior.D, y[1:], cfg, method="pgd", generator=torch.Generator().manual_seed(0))
    assert float((both.x[1] - one.x[0]).abs().max()) < 1e-3


def test_held_out_pixels_stop_an_adaptation_that_fits_the_noise(prior):
    """adapt_check: noisy observations of images G cannot produce. Long, large steps fit the noise (further from the
    noise-free images than a short adaptation); held out pixels keep, per image, a step where the noise was not yet
    fitted, and say which."""
    g = torch.Generator().manual_seed(0)
    clean = _off_range(seed=1)
    y = (clean + 0.3 * torch.randn(clean.shape, generator=g)).clamp(-1, 1)
    run = {}
    for check, steps in ((0.0, 40), (0.0, 120), (0.2, 120)):
        run[check, steps] = solve(prior.G, prior.D, y, FAST.replace(adapt_steps=steps, lr_adapt=3e-3, adapt_check=check),
                                  method="pgd", generator=torch.Generator().manual_seed(0))

    def err(o):
        return float((o.x - clean).square().mean())

    assert err(run[0.0, 120]) > 1.5 * err(run[0.0, 40])  # the long adaptation fits the noise
    checked = run[0.2, 120]
    assert err(checked) < 0.6 * err(run[0.0, 120])
    kept = checked.adapt_kept
    assert kept.shape == (2, 3) and (kept % 10 == 0).all() and (0 < kept).all() and (kept < 120).all()
    assert run[0.0, 120].adapt_kept is None


@pytest.mark.parametrize("field,value", [("adapt_steps", -1), ("adapt_steps", 1.5), ("lr_adapt", 0.0),
                                         ("lr_adapt", float("nan")), ("no_harm", -1.0), ("adapt_check", 1.0),
                                         ("adapt_check", -0.1)])
def test_adaptation_fields_validated(field, value):
    with pytest.raises(ValueError, match=f"MimicConfig.{field}"):
        MimicConfig(**{field: value})


def test_no_harm_returns_the_observation_when_its_damage_is_small_and_the_recovery_when_large(prior):
    """Observations the surrogate barely changes (here: G's own images, slightly off) come back as themselves with
    a trusted error far above their estimated damage; with one far below it the recovery keeps at most 1/17 of the
    observation (e_x is then half the unexplained residual, e_y at least all of it: w <= 1 / (1 + 2^4)), one weight
    per group."""
    y = _off_range(S=1)
    out = {}
    for trusted in (10.0, 1e-6):
        out[trusted] = solve(prior.G, prior.D, y, FAST.replace(no_harm=trusted), method="mimic",
                             generator=torch.Generator().manual_seed(0))
    base = solve(prior.G, prior.D, y, FAST, method="mimic", generator=torch.Generator().manual_seed(0))
    assert out[10.0].observed_weight.shape == (1, 3) and (out[10.0].observed_weight > 0.99).all()
    assert torch.allclose(out[10.0].x, y, atol=0.02)
    w = out[1e-6].observed_weight
    assert (w <= 1 / 17 + 1e-6).all() and (w == w[:, :1]).all()
    assert torch.allclose(out[1e-6].x, base.x + w[..., None, None, None] * (y - base.x), atol=1e-3)
    assert base.observed_weight is None


def test_no_harm_leaves_pgd_and_gray_observations_alone(prior):
    y = _off_range(S=1)
    pgd = solve(prior.G, prior.D, y, FAST.replace(no_harm=10.0), method="pgd")
    assert pgd.observed_weight is None
    gray = solve(prior.G, prior.D, y.mean(2, keepdim=True), FAST.replace(no_harm=10.0), method="mimic")
    assert gray.observed_weight is None and gray.x.shape[2] == 3


def test_observed_weight_in_the_recovery_and_the_reports(tiny_prior_dir, tmp_path):
    """recover() and recover_folder() report each image's do-no-harm weight (one per group); gray observations of
    a colour prior (do-no-harm does not run) and runs without it carry none, and report.json stays valid JSON."""
    import json

    import numpy as np
    from PIL import Image

    from mimic import recover
    from mimic.runner import recover_folder

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    imgs += [rng.integers(0, 256, (64, 64), dtype=np.uint8) for _ in range(2)]  # gray: a group of their own
    kw = dict(prior=str(tiny_prior_dir), device="cpu", batch_size=2, warm_steps=2, T=1, T1=2, T2=2, adapt_steps=2)
    r = recover(imgs, no_harm=0.025, **kw)
    w = r.observed_weight
    assert w.shape == (4,) and np.isfinite(w[:2]).all() and (0 <= w[:2]).all() and (w[:2] <= 1).all()
    assert w[0] == w[1] and np.isnan(w[2:]).all()
    report = json.loads((r.save(tmp_path / "api") / "report.json").read_text())
    assert [("observed_weight" in im) for im in report["images"]] == [True, True, False, False]
    assert recover(imgs[:2], no_harm=0.0, **kw).observed_weight is None  # the blind preset has it on

    inp = tmp_path / "in"
    inp.mkdir()
    for i, im in enumerate(imgs[:2]):
        Image.fromarray(im).save(inp / f"img{i}.png")
    res = recover_folder(inp, tmp_path / "out", no_harm=0.025, progress=False, **kw)
    ims = json.loads((tmp_path / "out" / "report.json").read_text())["images"]
    assert res.report["images"] == ims and len(ims) == 2
    assert ims[0]["observed_weight"] == ims[1]["observed_weight"] and 0 <= ims[0]["observed_weight"] <= 1
