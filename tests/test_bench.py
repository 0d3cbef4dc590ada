import json
from pathlib import Path

from click.testing import CliRunner

from mimic.cli.main import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_bench_blind_quick(tmp_path, tiny_prior_dir):
    r = CliRunner().invoke(cli, ["bench", "blind", "--quick", "--out", str(tmp_path), "--prior", str(tiny_prior_dir),
                                 "--data", str(EXAMPLES / "clean"), "--tasks", "negative,occlusion",
                                 "--methods", "pgd,mimic,oracle,pgd_r2", "--n", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "blind.json").read_text())
    rows = res["results"]
    assert {(x["task"], x["method"]) for x in rows} == {(t, m) for t in ("negative", "occlusion")
                                                         for m in ("pgd", "mimic", "oracle", "pgd_r2")}
    for x in rows:
        assert {"task", "method", "n", "psnr_mean", "ssim_mean"} <= set(x) and x["n"] == 3
    assert all("gain_over_pgd_db" in x for x in rows if x["method"] != "pgd")
    assert (tmp_path / "obs" / "negative" / "0000.png").exists()
    assert "| negative | mimic |" in (tmp_path / "blind.md").read_text()


def test_bench_speed_runs(tiny_prior_dir):
    from mimic.bench.speed import bench_speed

    rows = bench_speed(prior=str(tiny_prior_dir), devices=["cpu"], groups=(1, 2), batch=2, outer=1, warm=2)
    assert len(rows) == 2 and rows[1]["speedup_vs_loop"] > 0
    assert all(r["images_per_sec"] > 0 for r in rows)


def test_bench_reconstruct_quick(tmp_path, tiny_prior_dir):
    r = CliRunner().invoke(cli, ["bench", "reconstruct", "--quick", "--out", str(tmp_path), "--prior", str(tiny_prior_dir),
                                 "--data", str(EXAMPLES / "clean"), "--n", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "reconstruct.json").read_text())["results"]
    methods = {(x["corruption"], x["method"]) for x in rows}
    assert ("convolve_noise", "tv") in methods and ("remove_pixel_0.9", "biharmonic") in methods
    assert ("patch_band", "dip") in methods and ("patch_band", "mimic") in methods
    assert ("convolve_noise", "biharmonic") not in methods
    assert all(x["mse_mean"] >= 0 and x["n"] == 2 for x in rows)


def test_biharmonic_fills_holes_better_than_zeros():
    import numpy as np

    from mimic.bench.reconstruct import biharmonic

    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([(xx * 8) % 256, (yy * 8) % 256, np.full_like(xx, 128)], -1).astype(np.uint8)[None]
    keep = np.random.default_rng(0).random((1, 32, 32, 1)) > 0.5
    obs = img * keep
    rec = biharmonic(obs, keep)
    assert np.abs(rec.astype(int) - img).mean() < np.abs(obs.astype(int) - img).mean() / 3
