import numpy as np
import pytest
import torch

from mimic.engine import MimicConfig, solve
from mimic.imageops import clip_sign, fill_mask
from mimic.priors import load_prior

FAST = MimicConfig(warm_steps=4, T=2, T1=3, T2=3, lam_adv=1e-4, lam_I=0.1, lr_s=1e-3, lr_g=1e-2)


@pytest.fixture(scope="module")
def prior(tiny_prior_dir):
    return load_prior(tiny_prior_dir)


def _close(a, b, rel=2e-2):
    """Equal up to float reordering (grouped vs single convolutions), relative to the signal."""
    return float((a - b).abs().max()) <= rel * float(a.abs().max())


def _y(prior, S=2, B=3, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = prior.G(torch.rand(S * B, 100, generator=g) * 2 - 1)
    y = x.reshape(S, B, 3, 64, 64)
    return y if C == 3 else y.mean(2, keepdim=True)


@pytest.mark.parametrize("method", ["mimic", "pgd"])
@pytest.mark.parametrize("cobs", [1, 3])
def test_shapes_finite_box(prior, method, cobs, device):
    y = _y(prior, C=cobs).to(device)  # made on the CPU, where the shared prior fixture lives
    seen = []

    def cb(t, x, fx, hist):
        seen.append(t)

    prior.to(device)
    try:
        out = solve(prior.G, prior.D, y, FAST, method=method, generator=torch.Generator().manual_seed(0), callback=cb)
    finally:
        prior.to("cpu")  # the fixture is shared by later tests
    assert out.x.device.type == torch.device(device).type
    assert out.x.shape == (2, 3, 3, 64, 64)
    assert out.fx.shape[2] == (cobs if method == "mimic" else 3)
    assert out.z.abs().max() <= 1.0
    assert torch.isfinite(out.x).all() and torch.isfinite(out.obs_loss).all()
    assert out.history["obs"].shape == (FAST.T + 1, 2)
    assert all(torch.isfinite(v).all() for v in out.history.values())
    assert seen == list(range(FAST.T + 1))


def test_z_stays_in_box_every_step(prior):
    """A huge latent step would leave the box without the projection."""
    y = _y(prior)
    cfg = FAST.replace(lr_warm=5.0, lr_g=5.0, warm_steps=3, T=1)
    out = solve(prior.G, prior.D, y, cfg, method="pgd")
    assert out.z.abs().max() <= 1.0
    assert (out.z.abs() == 1.0).any()  # the projection was active


def test_identity_surrogate_equals_pgd(prior):
    y = _y(prior)
    cfg = FAST.replace(lam_I=0.0, surrogate="identity")
    a = solve(prior.G, prior.D, y, cfg, method="mimic", generator=torch.Generator().manual_seed(0))
    b = solve(prior.G, prior.D, y, cfg, method="pgd", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.z, b.z) and torch.equal(a.x, b.x)


def test_batched_groups_equal_one_at_a_time(prior):
    """Groups solved together give what each gives alone."""
    # with a deterministic surrogate every group matches its solo run
    cfg = FAST.replace(surrogate="identity")
    y = _y(prior, S=3)
    allg = solve(prior.G, prior.D, y, cfg)
    for s in range(3):
        one = solve(prior.G, prior.D, y[s : s + 1], cfg)
        assert _close(one.x[0], allg.x[s], rel=5e-2)  # float reordering, amplified by RMSProp on flat z dims
    # learned surrogates: the first group's initialisation does not depend on the batch ...
    a = solve(prior.G, prior.D, y, FAST.replace(T=0, warm_steps=0), generator=torch.Generator().manual_seed(0))
    b = solve(prior.G, prior.D, y[:1], FAST.replace(T=0, warm_steps=0), generator=torch.Generator().manual_seed(0))
    assert all(torch.allclose(a.surrogate.state_dict()[k][:1], v, atol=1e-5) for k, v in b.surrogate.state_dict().items())
    # ... and no group sees another: changing group 1's observations leaves group 0 bit-identical
    y2 = y.clone()
    y2[1] = -y2[1]
    c1 = solve(prior.G, prior.D, y, FAST, generator=torch.Generator().manual_seed(0))
    c2 = solve(prior.G, prior.D, y2, FAST, generator=torch.Generator().manual_seed(0))
    assert torch.equal(c1.x[0], c2.x[0]) and torch.equal(c1.x[2], c2.x[2])
    assert not torch.equal(c1.x[1], c2.x[1])


def test_padding_does_not_change_results(prior):
    y = _y(prior, S=1, B=3)
    cfg = FAST
    a = solve(prior.G, prior.D, y, cfg, generator=torch.Generator().manual_seed(0))
    ypad = torch.cat([y, torch.zeros_like(y[:, :1])], 1)
    valid = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    b = solve(prior.G, prior.D, ypad, cfg, valid=valid, generator=torch.Generator().manual_seed(0))
    assert _close(a.x, b.x[:, :3])


def test_pgd_lowers_observation_loss(prior):
    y = _y(prior, S=1, B=2, seed=5)
    out = solve(prior.G, prior.D, y, FAST.replace(warm_steps=30, T=0), method="pgd")
    h = out.history["obs"]
    start = (y - prior.G(torch.zeros(1, 100)).unsqueeze(0)).abs().mean()
    assert float(h[-1].mean()) < float(start)


class _FlakyG(torch.nn.Module):
    """A generator whose second group's images are NaN whenever it is run on two groups at once (the first attempt);
    run on one group (the retry), it is the real generator."""

    def __init__(self, G, B):
        super().__init__()
        self.G, self.B, self.nz, self.nc = G, B, G.nz, G.nc

    def forward(self, z):
        x = self.G(z)
        if len(z) == 2 * self.B:
            x = torch.cat([x[: self.B], x[self.B :] * float("nan")])
        return x


def test_diverged_group_is_retried_with_half_the_step(prior):
    """A group whose loss turns NaN is detected and run again with half the step; the other group is kept."""
    y = _y(prior, S=2)
    cfg = FAST.replace(inits=("identity",))  # one candidate start: two groups are 2 B images per G call
    out = solve(_FlakyG(prior.G, 3), prior.D, y, cfg, generator=torch.Generator().manual_seed(0))
    assert out.retried == [1]
    assert torch.isfinite(out.x).all() and torch.isfinite(out.obs_loss).all()
    assert out.lr_scale.tolist() == [1.0, 0.5]
    alone = solve(prior.G, prior.D, y[:1], cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.x[0], alone.x[0])  # the healthy group is the first attempt's


def test_negated_start_wins_on_inverted_observations(prior):
    """Each group keeps the candidate start that explains its observations best."""
    y = _y(prior, S=2, seed=3)
    y[1] = -y[1]
    out = solve(prior.G, prior.D, y, FAST.replace(warm_steps=20, lr_warm=3e-2, T=1))
    assert out.init == ["identity", "negated"]
    assert out.x.shape[0] == 2 and out.surrogate.S == 2


def test_oracle_weight_ignores_destroyed_pixels(prior):
    """With a known mask, what the corruption wrote into destroyed pixels has no effect."""
    y = _y(prior, S=1, B=2, seed=7)
    m = torch.ones(1, 1, 1, 64, 64)
    m[..., 20:40, :] = 0
    y2 = y.clone()
    y2[..., 20:40, :] = torch.rand_like(y2[..., 20:40, :]) * 2 - 1
    a = solve(prior.G, prior.D, y, FAST, method="pgd", weight=m)
    b = solve(prior.G, prior.D, y2, FAST, method="pgd", weight=m)
    assert torch.equal(a.x, b.x)
    c = solve(prior.G, prior.D, y2, FAST, method="pgd")
    assert not torch.equal(a.x, c.x)


def test_restarts_keep_the_best_copy_per_image(prior):
    y = _y(prior, S=2, B=2, seed=11)
    cfg = FAST.replace(lam_I=0.0)
    one = solve(prior.G, prior.D, y, cfg, method="pgd", generator=torch.Generator().manual_seed(0))
    many = solve(prior.G, prior.D, y, cfg.replace(restarts=3), method="pgd", generator=torch.Generator().manual_seed(0))
    assert many.x.shape == one.x.shape and many.z.shape == one.z.shape
    # the first copy of every image is the single run, so the best of three can only be as good or better
    assert (many.obs_loss <= one.obs_loss + 1e-6).all()
    assert many.z.abs().max() <= 1


def test_robust_weights_mute_what_the_whole_group_gets_wrong():
    """Pixels wrong in every observation of a group lose their weight; one image's outlier and padding do not."""
    from mimic.fidelity import group_robust_weights

    g = torch.Generator().manual_seed(0)
    S, B = 2, 5
    fx = torch.rand(S, B, 3, 16, 16, generator=g) * 2 - 1
    y = fx + 0.05 * torch.randn(S, B, 3, 16, 16, generator=g)
    y[..., :4] += 1.0  # the first 4 columns corrupted in every observation (stuck columns, an occluder)
    y[0, 0, :, 8, 8] += 5.0  # an outlier in one observation only: the group median ignores it
    valid = torch.ones(S, B)
    valid[1, 2:] = 0  # padding: garbage that must not count
    y[1, 2:] += 100.0
    w = group_robust_weights(y, fx, valid, MimicConfig(robust=2.0))
    assert w.shape == (S, 1, 3, 16, 16)
    assert (w > 0).all() and (w <= 1).all()
    assert w[..., :4].max() < 0.01
    assert w[..., 4:].mean() > 0.9
    assert w[1, ..., 4:].mean() > 0.9  # padding ignored
    assert w[0, 0, :, 8, 8].min() > 0.3


def test_robust_weights_signed_mute_shared_residuals_and_keep_face_to_face_errors():
    """robust_stat="signed": a residual every observation shares (one noise pattern over stuck columns) is muted;
    errors that change sign from image to image (the prior missing details) are kept, unlike with "abs"."""
    from mimic.fidelity import group_robust_weights

    g = torch.Generator().manual_seed(2)
    S, B = 2, 5
    fx = torch.rand(S, B, 3, 16, 16, generator=g) * 2 - 1
    y = fx + 0.05 * torch.randn(S, B, 3, 16, 16, generator=g)
    y[..., :4] += 0.8 * torch.randn(S, 1, 3, 16, 4, generator=g).sign()  # one pattern, shared by the group
    y[..., 8:10, 6:] += 0.8 * torch.linspace(-1, 1, B).view(1, B, 1, 1, 1)  # same pixels, sign varies per image
    cfg = MimicConfig(robust=2.0, robust_stat="signed")
    w = group_robust_weights(y, fx, torch.ones(S, B), cfg)
    wa = group_robust_weights(y, fx, torch.ones(S, B), cfg.replace(robust_stat="abs"))
    assert w.shape == wa.shape == (S, 1, 3, 16, 16)
    assert w[..., :4].max() < 0.01 and wa[..., :4].max() < 0.01
    assert w[..., 8:10, 6:].mean() > 0.6 and wa[..., 8:10, 6:].max() < 0.01
    with pytest.raises(ValueError, match="robust_stat"):
        cfg.replace(robust_stat="mean")


def _stuck(prior):
    """One group of 4 faces whose first 20 columns are stuck at column 20 plus one shared noise pattern."""
    y = _y(prior, S=1, B=4)
    y[..., :20] = y[..., 20:21] + 0.25 * torch.randn(1, 1, 3, 64, 20, generator=torch.Generator().manual_seed(0))
    return y


def test_robust_keep_never_raises_a_weight_again(prior):
    """keep_lowest (robust_keep): the fit uses the minimum of every weight map computed so far; without it, the
    latest map."""
    from mimic.fidelity import Fidelity

    y = _stuck(prior)
    cfg = MimicConfig(robust=2.0, robust_stat="signed")
    fx1 = y.clone()
    fx1[..., :20] = 0.0  # the stuck columns unexplained
    fx2 = y.clone()
    fx2[..., 40:] += 0.5  # later: the stuck columns explained, other columns not
    for keep in (False, True):
        fit = Fidelity(y, cfg, torch.ones(1, 4))
        fit.update_robust(fx1)
        w1 = fit.robust
        fit.update_robust(fx2, keep_lowest=keep)
        w2 = Fidelity(y, cfg, torch.ones(1, 4))
        w2.update_robust(fx2)
        assert torch.equal(fit.robust, torch.minimum(w1, w2.robust) if keep else w2.robust)
        assert (fit.robust[..., :20].max() < 0.01) == keep  # the muted columns stay muted only with keep


def test_robust_weights_and_identity_loss_mute_the_same_pixels(prior):
    """Once robust weights exist, L_obs and L_I's |y - G(z)| term ignore the muted pixels: what y holds there
    changes neither; the surrogate's own fit still sees them."""
    from mimic.fidelity import Fidelity

    y = _stuck(prior)
    cfg = MimicConfig(robust=2.0, robust_stat="signed")
    x = _y(prior, S=1, B=4)  # the faces before the columns got stuck
    fit = Fidelity(y, cfg, torch.ones(1, 4))
    fit.update_robust(x)
    y2 = y.clone()
    y2[..., :20] += 0.5
    fit2 = Fidelity(y2, cfg, torch.ones(1, 4))
    fit2.robust = fit.robust
    fit2._weights()
    assert torch.allclose(fit.obs(x), fit2.obs(x), atol=1e-3)
    assert torch.allclose(fit.ident(x, x), fit2.ident(x, x), atol=1e-3)
    assert (fit2.obs_surrogate(x) - fit.obs_surrogate(x) > 0.05).all()


def _count_calls(G):
    calls = []

    class Counting(torch.nn.Module):
        nz, nc = G.nz, G.nc

        def forward(self, z):
            calls.append(len(z))
            return G(z)

    return Counting(), calls


@pytest.mark.parametrize("at", [0, 6])
def test_robust_at_keeps_the_budget_and_rewind_returns_z_to_its_start(prior, at):
    """The first robust weights come after ``robust_at`` warm steps without adding any step; with robust_rewind z
    goes back to z0 then (so with the weights at the warm start's last step and no alternation, z ends at z0)."""
    from mimic.engine import z_init

    y = _stuck(prior)
    base = FAST.replace(robust=2.0, robust_stat="signed", warm_steps=10, select_after=2, lam_I=0.0)
    G, calls = _count_calls(prior.G)
    solve(G, prior.D, y, base.replace(robust_at=at))
    n_plain = len(calls)
    calls.clear()
    solve(G, prior.D, y, base.replace(robust=0.0))
    assert len(calls) == n_plain - 1  # the same steps; only the first weights' own G(z)
    end = solve(prior.G, prior.D, y, base.replace(robust_at=10, robust_rewind=True, T=0))
    assert torch.equal(end.z, z_init(100).expand_as(end.z))
    moved = solve(prior.G, prior.D, y, base.replace(robust_at=10, T=0))
    assert not torch.equal(moved.z, end.z)


def _smooth_images(n, c=3, size=64, seed=0):
    """Natural-looking test images: blurred noise on the 8-bit grid, in about [-0.8, 0.8]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, size, size, generator=g)
    k = torch.ones(c, 1, 9, 9) / 81
    for _ in range(3):
        x = torch.nn.functional.conv2d(x, k, padding=4, groups=c)
    x = 0.8 * x / x.abs().amax(dim=(1, 2, 3), keepdim=True)
    return ((x + 1) * 127.5).round() / 127.5 - 1


def test_fill_mask_finds_constant_fills_and_nothing_else():
    x = _smooth_images(6)
    assert fill_mask(x) is None  # natural images: no spike
    assert fill_mask(x.clamp(max=0.3)) is None  # clipping piles pixels at the maximum: not a fill
    assert fill_mask(x.clamp(min=-0.3)) is None  # ... nor at the minimum
    g = torch.Generator().manual_seed(1)
    keep = torch.rand(6, 1, 64, 64, generator=g) >= 0.7  # a random mask per image, all channels (remove_pixel)
    m = fill_mask(x * keep)
    assert m is not None and m.shape == x.shape
    hit = (m == 0)
    removed = ~keep.expand_as(x)
    assert (hit & removed).sum() / removed.sum() > 0.97  # recall
    assert (hit & ~removed).sum() / hit.sum() < 0.02  # precision
    keep_c = torch.rand(6, 3, 64, 64, generator=g) >= 0.5  # per channel (remove_pixel_channel), in (S, B, C, H, W)
    m = fill_mask((x * keep_c).view(2, 3, 3, 64, 64))
    assert m.shape == (2, 3, 3, 64, 64)
    assert ((m.view_as(x) == 0) == ~keep_c).float().mean() > 0.97
    band = x.clone()
    band[1, :, 20:40] = 0.0  # one image with a band: only that image gets a mask
    m = fill_mask(band)
    assert m is not None and (m[1, :, 20:40] == 0).all()
    assert (m[[0, 2, 3, 4, 5]] == 1).all()
    # a quantised image (posterised to 8 or 16 levels per channel) has a spike at every level and no fill
    for bits in (3, 4):
        levels = 2**bits - 1
        poster = torch.round((x + 1) / 2 * levels) / levels * 2 - 1
        assert fill_mask(poster) is None and clip_sign(poster) is None
    # the limit of the rule: a fill in a quantised channel is not told from its levels, and stays in the fit
    poster[1, :, 20:40] = 0.0
    assert fill_mask(poster) is None


def _prior_images(prior, n, g):
    """n samples of the prior on the 8-bit grid, (1, n, 3, 64, 64) in [-1, 1]."""
    with torch.no_grad():
        x = prior.G(torch.rand(n, 100, generator=g) * 2 - 1).view(1, n, 3, 64, 64)
    return ((x + 1) * 127.5).round() / 127.5 - 1


def _pgd_with_and_without(prior, y, x, cfg, option):
    """PGD on y with ``option`` on (cfg) and off; asserts that every image is closer to x with it on."""
    a = solve(prior.G, prior.D, y, cfg, method="pgd")
    b = solve(prior.G, prior.D, y, cfg.replace(**{option: False}), method="pgd")
    err_a = (a.x - x).pow(2).mean(dim=(2, 3, 4))  # (1, n)
    err_b = (b.x - x).pow(2).mean(dim=(2, 3, 4))
    assert (err_a < err_b).all(), (err_a, err_b)
    return a, b


def test_fill_detection_lets_pgd_ignore_removed_pixels(prior):
    """With fill=True, pixels set to a constant stop pulling G(z) towards that constant."""
    g = torch.Generator().manual_seed(3)
    x = _prior_images(prior, 4, g)
    keep = torch.rand(1, 4, 1, 64, 64, generator=g) >= 0.8
    y = x * keep  # 80% of the pixels set to 0 (mid-gray), a new mask per image
    cfg = FAST.replace(warm_steps=60, T=2, lr_warm=3e-2, fill=True)
    a, b = _pgd_with_and_without(prior, y, x, cfg, "fill")
    # the mask is the engine's own: the same run with the known mask given as a weight agrees closely
    c = solve(prior.G, prior.D, y, cfg.replace(fill=False), method="pgd", weight=keep.float())
    assert (a.x - c.x).abs().mean() < 0.05


def test_fill_with_candidate_starts_batches_groups_and_restarts(prior):
    """After the candidate choice the fill mask is the winners': groups batched together give what each gives
    alone (a mask left at the K candidates' size broke batching and doubled a lone group's L_obs), and restarts
    run with fill on."""
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        x = prior.G(torch.rand(6, 100, generator=g) * 2 - 1).view(2, 3, 3, 64, 64)
    x = ((x + 1) * 63.75).round() / 63.75 - 1  # even 8-bit levels only, so the odd level 127 is free for the fill
    keep = torch.rand(2, 3, 1, 64, 64, generator=g) >= 0.5
    y = torch.where(keep, x, torch.tensor(127 / 127.5 - 1))  # half the pixels removed
    k = fill_mask(y)  # (2, 3, 3, 64, 64) 1 at the observed pixels
    assert k is not None and torch.equal(k > 0, keep.expand_as(k))
    cfg = FAST.replace(fill=True, lam_I=0.0)
    both = solve(prior.G, prior.D, y, cfg, generator=torch.Generator().manual_seed(0))
    one = solve(prior.G, prior.D, y[:1], cfg, generator=torch.Generator().manual_seed(0))
    assert both.obs_loss.shape == (2, 3) and one.obs_loss.shape == (1, 3)
    assert _close(one.x[0], both.x[0], rel=5e-2)
    # L_obs is each image's mean over its observed pixels (not over the K candidates' masks summed)
    for out, s in ((one, slice(0, 1)), (both, slice(0, 2))):
        e, w = (out.fx - y[s]).abs(), k[s]
        assert torch.allclose(out.obs_loss, (e * w).sum(dim=(2, 3, 4)) / w.sum(dim=(2, 3, 4)), rtol=1e-4)
    many = solve(prior.G, prior.D, y, cfg.replace(restarts=2), generator=torch.Generator().manual_seed(0))
    assert many.x.shape == both.x.shape and many.obs_loss.shape == (2, 3)


def _same_fill_mask(ya, yb):
    ma, mb = fill_mask(ya), fill_mask(yb)
    return ma is not None and mb is not None and torch.equal(ma, mb)


def test_fill_value_itself_has_no_effect_on_mimic(prior):
    """With fill=True, what the detected fill pixels hold enters no loss (L_obs, L_I, the candidate choice)."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        x = prior.G(torch.rand(3, 100, generator=g) * 2 - 1).view(1, 3, 3, 64, 64)
    x = ((x + 1) * 63.75).round() / 63.75 - 1  # even 8-bit levels only, so odd levels are free for the fill
    keep = torch.rand(1, 3, 1, 64, 64, generator=g) >= 0.7
    ya = torch.where(keep, x, torch.tensor(127 / 127.5 - 1))  # removed pixels at level 127
    yb = torch.where(keep, x, torch.tensor(131 / 127.5 - 1))  # ... or at level 131
    assert _same_fill_mask(ya, yb)
    cfg = FAST.replace(fill=True)  # lam_I = 0.1: the identity loss's |y - G(z)| term must skip them too
    a = solve(prior.G, prior.D, ya, cfg, generator=torch.Generator().manual_seed(0))
    b = solve(prior.G, prior.D, yb, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.x, b.x)
    c = solve(prior.G, prior.D, yb, cfg.replace(fill=False), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(a.x, c.x)


def test_clip_sign_finds_truncations_and_nothing_else():
    from mimic.imageops import clip_sign

    x = _smooth_images(6)
    assert clip_sign(x) is None  # natural images: nothing piles up at either end
    top = 136 / 127.5 - 1  # truncated at level 136 (gray_blur truncates at 120)
    s = clip_sign(x.clamp(max=top))
    assert s is not None and s.shape == x.shape
    lv = ((x + 1) * 127.5).round()  # 8-bit levels (float comparisons at the level itself are fragile)
    hit, clipped = s == 1, lv >= 136
    assert not (hit & ~clipped).any() and not (s == -1).any()  # only truncated pixels
    assert hit.sum() / clipped.sum() > 0.9  # nearly all (a truncation just under a flat top looks like the top)
    bot = 119 / 127.5 - 1
    s = clip_sign(x.clamp(min=bot).view(2, 3, 3, 64, 64))  # clipped from below, in (S, B, C, H, W)
    hit, clipped = s.view_as(x) == -1, lv <= 119
    assert s.shape == (2, 3, 3, 64, 64) and not (hit & ~clipped).any() and not (s == 1).any()
    assert hit.sum() / clipped.sum() > 0.9
    one = x.clone()
    one[2, 1] = one[2, 1].clamp(max=0.0)  # one channel of one image
    s = clip_sign(one)
    assert torch.equal(s[2, 1] == 1, x[2, 1] >= 0.0) and (s.count_nonzero() == s[2, 1].count_nonzero())
    keep = torch.rand(6, 1, 64, 64, generator=torch.Generator().manual_seed(1)) >= 0.7
    assert clip_sign(x * keep) is None  # a fill inside the range is not a clip (fill_mask's business)


def test_clip_detection_lets_pgd_see_through_a_truncation(prior):
    """With clip=True, pixels truncated at a level only bound G(z) from below and stop flattening it."""
    x = _prior_images(prior, 4, torch.Generator().manual_seed(4))
    level = x.flatten().quantile(0.6)  # the brightest 40% truncated
    y = x.clamp(max=level)
    cfg = FAST.replace(warm_steps=60, T=2, lr_warm=3e-2, clip=True)
    a, b = _pgd_with_and_without(prior, y, x, cfg, "clip")
    # what the fit no longer pays for: G(z) above the truncation where y is truncated
    assert (a.x > level).float().mean() > (b.x > level).float().mean()


def test_clip_makes_every_fit_to_y_one_sided():
    """At pixels clipped from above, G(z) brighter than y costs nothing in L_obs or in L_I's |y - G(z)| term."""
    from mimic.fidelity import Fidelity, group_robust_weights
    from mimic.imageops import clip_sign

    x = _smooth_images(2).view(1, 2, 3, 64, 64)
    level = 136 / 127.5 - 1
    y = x.clamp(max=level)
    s = clip_sign(y)
    cfg = MimicConfig(lam_I=1.0, clip=True)
    fit, plain = Fidelity(y, cfg, torch.ones(1, 2)), Fidelity(y, cfg.replace(clip=False), torch.ones(1, 2))
    brighter = torch.where(s > 0, y + 0.3, y)  # G(z) above the truncation where y is truncated, equal elsewhere
    assert (fit.ident(brighter, brighter) == 0).all() and (fit.obs(brighter) == 0).all()
    assert (plain.ident(brighter, brighter) > 0.05).all() and (plain.obs(brighter) > 0.05).all()
    darker = torch.where(s > 0, y - 0.3, y)  # below a lower bound: still paid for
    assert torch.allclose(fit.ident(darker, darker), plain.ident(brighter, brighter))
    # nor do the robust weights mute a pixel for being brighter than a truncated y
    w = group_robust_weights(y, brighter, torch.ones(1, 2), cfg.replace(robust=2.0), clip=s)
    assert (w == 1).all()
    assert group_robust_weights(y, brighter, torch.ones(1, 2), cfg.replace(robust=2.0)).min() < 0.01


def test_keep_observed_takes_observed_pixels_and_generates_only_the_missing(prior):
    """keep_observed: the output is y where an observation with detected fill is observed, G(z) blended into it
    elsewhere; with keep_tv=0 an observation with no fill (nothing known to be missing) is G(z) everywhere."""
    from mimic.imageops import blend_observed, fill_mask

    g = torch.Generator().manual_seed(11)
    x = _prior_images(prior, 3, g)  # (1, 3, 3, 64, 64)
    keep = torch.ones(1, 3, 1, 64, 64, dtype=torch.bool)
    keep[:, :2, :, 20:40] = False  # a band of rows removed in the first two observations, the third intact
    y = x * keep
    cfg = FAST.replace(fill=True)
    a = solve(prior.G, prior.D, y, cfg, generator=torch.Generator().manual_seed(0))
    b = solve(prior.G, prior.D, y, cfg.replace(keep_observed=True, keep_tv=0.0),
              generator=torch.Generator().manual_seed(0))
    k = fill_mask(y)[0, :2] > 0  # (2, 3, 64, 64) the engine's observed pixels: the band is detected as missing
    assert not k[:, :, 20:40].any() and k.float().mean() > 0.6
    assert torch.equal(b.x[0, :2][k], y[0, :2][k])  # observed pixels as they are
    assert torch.equal(b.x[0, 2], a.x[0, 2])  # no fill found: nothing pasted
    # missing ones: the same G(z), blended into the observed pixels
    assert not torch.equal(b.x[0, :2][~k], a.x[0, :2][~k])
    assert torch.allclose(b.x[0, :2], blend_observed(a.x[0, :2], y[0, :2], k.float()), atol=1e-6)
    assert not torch.equal(a.x[0, :2][k], y[0, :2][k])
    with pytest.raises(ValueError, match="keep_observed needs fill"):
        FAST.replace(keep_observed=True)


def test_keep_observed_adds_the_denoised_residual_where_nothing_is_missing(prior):
    """keep_observed on observations with no fill (smooth images plus noise): the output is G(z) plus the residual
    y - G(z) TV-denoised with weight keep_tv x its estimated noise sigma, closer to the clean images than both G(z)
    and y; keep_tv=0 leaves G(z) as it is."""
    import torch.nn.functional as F

    from mimic.imageops import denoise_tv, noise_sigma

    g = torch.Generator().manual_seed(12)
    x = F.interpolate(torch.rand(3, 3, 4, 4, generator=g) * 1.6 - 0.8, size=64, mode="bilinear").unsqueeze(0)
    y = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(-1, 1)  # (1, 3, 3, 64, 64)
    cfg = FAST.replace(fill=True)
    run = lambda c: solve(prior.G, prior.D, y, c, generator=torch.Generator().manual_seed(0))
    a, b, c = run(cfg), run(cfg.replace(keep_observed=True)), run(cfg.replace(keep_observed=True, keep_tv=0.0))
    assert a.fill is None  # no fill detected: every pixel observed
    assert torch.equal(c.x, a.x)
    r = (y - a.x)[0]  # (3, 3, 64, 64)
    want = (a.x[0] + denoise_tv(r, 0.7 * noise_sigma(r))).clamp(-1, 1)
    assert (b.x[0] - want).abs().max() < 1e-3  # float32 rounding of the weight moves 200 dual steps by ~1e-4
    err = lambda v: (v - x).square().mean().item()
    assert err(b.x) < 0.1 * err(a.x) and err(b.x) < 0.4 * err(y)
    with pytest.raises(ValueError, match="keep_tv"):
        cfg.replace(keep_observed=True, keep_tv=-1.0)


def test_denoise_tv_matches_scikit_image_and_noise_sigma_measures_white_noise():
    from skimage.restoration import denoise_tv_chambolle

    from mimic.imageops import denoise_tv, noise_sigma

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 24, generator=g) * 2 - 1  # (2, 3, 24, 24)
    out = denoise_tv(x, torch.tensor([0.05, 0.3]))
    for i, w in enumerate((0.05, 0.3)):
        ref = denoise_tv_chambolle(x[i].permute(1, 2, 0).double().numpy(), weight=w, channel_axis=-1, eps=0,
                                   max_num_iter=200)
        assert np.abs(out[i].permute(1, 2, 0).numpy() - ref).max() < 1e-5
    assert out[1].diff(dim=-1).abs().mean() < 0.5 * x[1].diff(dim=-1).abs().mean()  # smoother
    assert torch.equal(denoise_tv(x, 0.0), x)
    with pytest.raises(ValueError, match=">= 0"):
        denoise_tv(x, -0.1)
    sig = noise_sigma(torch.randn(4, 3, 64, 64, generator=g) * torch.tensor([0.05, 0.1, 0.2, 0.4]).view(4, 1, 1, 1))
    assert torch.allclose(sig, torch.tensor([0.05, 0.1, 0.2, 0.4]), rtol=0.06)
    ramp = torch.linspace(-1, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    assert noise_sigma(ramp).item() < 1e-5  # a plane has no noise


def test_blend_observed_is_the_harmonic_fill_of_the_residual():
    """blend_observed: observed pixels kept; a missing pixel gets x plus the average of its neighbours' residuals, so
    an x that is off by a constant in a hole is corrected exactly, and a hole in a linear ramp is filled exactly."""
    from mimic.imageops import blend_observed

    ramp = torch.linspace(-0.8, 0.8, 32).view(1, 1, 1, 32).expand(2, 3, 32, 32).contiguous()  # (2, 3, 32, 32)
    obs = torch.ones_like(ramp)
    obs[:, :, 10:22, 8:20] = 0
    y = ramp * obs
    out = blend_observed(ramp + 0.3, y, obs)  # x right up to a constant offset
    assert torch.equal(out[obs > 0], y[obs > 0])
    assert (out - ramp).abs().max() < 1e-3
    out0 = blend_observed(torch.zeros_like(ramp), y, obs, iters=2000)  # no x at all: the hole is interpolated
    assert (out0 - ramp).abs().max() < 1e-2


@pytest.mark.parametrize("field,value", [("T", -1), ("warm_steps", -100), ("T2", 2.5), ("restarts", 0),
                                         ("lr_g", float("nan")), ("lr_s", 0.0), ("lr_warm", float("inf")),
                                         ("lam_I", -0.1), ("robust_smooth", 0),
                                         ("surrogate", "nope"), ("inits", ("identity", "identity")),
                                         ("obs_norm", "l3"), ("keep_tv", -1.0)])
def test_config_refuses_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"MimicConfig.{field} "):
        MimicConfig().replace(**{field: value})


def test_config_refuses_unknown_fields():
    with pytest.raises(TypeError, match="unknown MimicConfig field"):
        MimicConfig().replace(separable=True)


@pytest.mark.parametrize("task", __import__("mimic").list_tasks())
def test_every_preset_recovers_with_a_prior_of_its_kind(task, tiny_prior_dir, tiny_fmnist_dirs):
    """Every registered preset runs end to end (a tiny random prior of the preset's kind, a short schedule): finite
    recoveries in [-1, 1], and a preset with a registered corruption names one that exists."""
    from mimic import get_corruption, get_task
    from mimic.api import fit_config

    t = get_task(task)
    pr = load_prior(tiny_fmnist_dirs[0] if t.prior == "fmnist28" else tiny_prior_dir)
    if t.corruption is not None:
        get_corruption(t.corruption)
    with torch.no_grad():
        y = pr.G(torch.rand(3, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1)[None]
    cfg, _ = fit_config(t.config, pr, "mimic")  # the tiny prior has no group statistics: the group term off
    out = solve(pr.G, pr.D, y, cfg.replace(warm_steps=4, select_after=2, T=1, T1=2, T2=2),
                generator=torch.Generator().manual_seed(0), stats=pr.group_stats)
    assert out.x.shape == y.shape and torch.isfinite(out.x).all() and out.x.abs().max() <= 1


def test_a_negated_start_must_win_by_the_margin(prior):
    """A candidate other than the first is kept only when its L_obs is below select_margin x the first's: with a
    margin that no candidate can meet, every group keeps the identity start, even an inverted one."""
    y = _y(prior, S=2, seed=3)
    y[1] = -y[1]
    cfg = FAST.replace(warm_steps=20, lr_warm=3e-2, T=1)
    assert solve(prior.G, prior.D, y, cfg).init == ["identity", "negated"]
    assert solve(prior.G, prior.D, y, cfg.replace(select_margin=1e-3)).init == ["identity", "identity"]
