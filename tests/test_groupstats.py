"""Group statistics (mimic.groupstats) and the engine's group term."""
import numpy as np
import pytest
import torch

from mimic.engine import MimicConfig, solve
from mimic.groupstats import GroupStats, fit_group_stats, image_stats
from mimic.priors import PriorError, load_prior


def _faces(n, seed=0):
    """Smooth synthetic 'faces': a warm blob on a darker background, varying per image (uint8 (n, 32, 32, 3))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:32j, -1:1:32j]
    out = []
    for _ in range(n):
        cx, cy, r = rng.uniform(-0.3, 0.3, 2).tolist() + [rng.uniform(0.4, 0.7)]
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)[..., None]
        skin = np.array([0.85, 0.6, 0.5]) * rng.uniform(0.8, 1.1)
        bg = rng.uniform(0.1, 0.5, 3)
        out.append(np.clip(blob * skin + (1 - blob) * bg + rng.normal(0, 0.02, (32, 32, 3)), 0, 1))
    return (np.stack(out) * 255).round().astype(np.uint8)


def test_image_stats_shape_and_values():
    x = torch.zeros(2, 5, 3, 8, 8)
    x[..., 0, :, :] = 0.5
    s = image_stats(x)
    assert s.shape == (2, 5, 9)
    assert torch.allclose(s[..., :3], torch.tensor([0.5, 0.0, 0.0]))
    assert image_stats(torch.rand(4, 1, 8, 8)).shape == (4, 2)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        image_stats(torch.rand(4, 2, 8, 8))


def test_real_groups_within_tolerance_a_colour_cast_far_outside():
    gs = fit_group_stats(_faces(2000), source="synthetic")
    test = torch.from_numpy(_faces(100, seed=1)).permute(0, 3, 1, 2).float() / 127.5 - 1
    groups = test.view(4, 25, 3, 32, 32)
    tol = gs.tolerance(torch.full((4,), 25.0))
    assert (gs.distance(groups) < tol).sum() >= 3  # real groups: what sampling gives (0.99 quantile)
    cast = ((groups + 1) / 2 * torch.tensor([1.25, 1.0, 0.65]).view(3, 1, 1)).clamp(0, 1) * 2 - 1
    assert (gs.excess(cast) > 5 * tol).all()  # a cast shared by the group is far outside


def test_round_trip_and_bad_file(tmp_path):
    gs = fit_group_stats(_faces(200))
    gs.save(tmp_path / "g.json")
    back = GroupStats.load(tmp_path / "g.json")
    assert torch.allclose(back.mean, gs.mean) and torch.allclose(back.cov, gs.cov) and back.channels == 3
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not a group statistics file"):
        GroupStats.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="too few"):
        fit_group_stats(_faces(5))


def test_shipped_priors_have_verified_group_stats(tmp_path):
    import shutil

    pr = load_prior("celeba64")
    assert pr.group_stats is not None and pr.group_stats.dim == 9 and pr.group_stats.n_images > 10000
    assert load_prior("fmnist28").group_stats.dim == 2
    # an altered statistics file is refused like an altered weight file
    d = tmp_path / "p"
    shutil.copytree(pr.path, d)
    (d / "group_stats.json").write_text((d / "group_stats.json").read_text().replace("0.", "0.1", 1))
    with pytest.raises(PriorError, match="group_stats.json: sha256 mismatch"):
        load_prior(d)


def test_group_term_needs_stats_and_leaves_pgd_alone(tiny_prior_dir):
    pr = load_prior(tiny_prior_dir)
    y = torch.rand(1, 4, 3, 64, 64) * 2 - 1
    cfg = MimicConfig(lam_group=1.0, warm_steps=2, T=1, T1=1, T2=1, inits=("identity",))
    with pytest.raises(ValueError, match="lam_group > 0 needs the prior's group statistics"):
        solve(pr.G, pr.D, y, cfg)
    with pytest.raises(ValueError, match="MimicConfig.lam_group"):
        MimicConfig(lam_group=-1.0)
    a = solve(pr.G, pr.D, y, cfg, method="pgd", generator=torch.Generator().manual_seed(0))
    b = solve(pr.G, pr.D, y, cfg.replace(lam_group=0.0), method="pgd", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.x, b.x)  # PGD has no group term


@pytest.mark.slow
def test_group_term_undoes_a_tone_curve_on_real_faces():
    """The shipped prior on the 16 demo faces (held-out CelebA), darkened by a gamma of 2.2 (a tone curve the whole
    group shares): with the group term the recoveries come out closer to the clean faces than without it, and than
    the observation."""
    from pathlib import Path

    from mimic import recover
    from mimic.bench.unseen import damage
    from mimic.io import read_image, to_tensor
    from mimic.metrics import psnr

    folder = Path(__file__).resolve().parent.parent / "examples" / "clean"
    clean = np.stack([read_image(p) for p in sorted(folder.glob("*.png"))])
    y = damage("gamma", to_tensor(clean), 1)
    short = dict(warm_steps=100, T=5, adapt_steps=0, no_harm=0.0)  # the group term alone
    with_term = recover(y, device="cpu", batch_size=16, **short).images
    without = recover(y, device="cpu", batch_size=16, lam_group=0.0, **short).images
    p_with, p_without, p_obs = (float(psnr(a, clean).mean()) for a in (with_term, without, y))
    assert p_with > p_without + 1.0, (p_with, p_without)
    assert p_with > p_obs + 1.0, (p_with, p_obs)


def test_a_prior_without_group_stats_runs_blind_with_the_term_off_and_says_so(tiny_prior_dir):
    from mimic import recover

    imgs = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    r = recover(imgs, prior=str(tiny_prior_dir), device="cpu", warm_steps=2, T=1, T1=1, T2=1)
    assert any("no group statistics" in n and "group term is off" in n for n in r.notices)
    assert r.config["lam_group"] == 0.0
