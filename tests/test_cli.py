import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mimic.cli.main import cli

FAST = ["--warm-steps", "2", "--T", "1", "--T1", "2", "--T2", "2", "--adapt-steps", "2", "--device", "cpu", "--quiet"]


def _folder(path, n=3, seed=0, bad=False):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path / f"img{i}.png")
    if bad:
        (path / "broken.png").write_bytes(b"this is not a png")
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_recover_folder_with_corrupt_file_and_resume(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in", bad=True)
    before = sorted(p.name for p in inp.iterdir())
    out = tmp_path / "out"
    r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, "--clean", inp, *FAST)
    assert r.exit_code == 1, r.output  # finished, but a file was skipped
    assert "broken.png" in r.output and "not a readable image" in r.output
    assert sorted(p.name for p in (out / "recovered").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert sorted(p.name for p in (out / "mimicked").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert (out / "grid.png").exists()
    rep = json.loads((out / "report.json").read_text())
    assert rep["settings"]["method"] == "mimic" and rep["settings"]["prior_sha256"]
    assert len(rep["images"]) == 3 and all("psnr" in x and "ssim" in x and "group" in x for x in rep["images"])
    assert rep["skipped"][0]["input"].endswith("broken.png")
    assert sorted(p.name for p in inp.iterdir()) == before  # nothing written into the input
    assert not list(out.rglob("*.tmp"))
    # resume: the finished images are not redone
    mtime = (out / "recovered" / "img0.png").stat().st_mtime_ns
    _folder(inp, n=4)  # one new image
    r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST)
    assert "resuming: 3 image(s)" in r.output
    assert (out / "recovered" / "img3.png").exists()
    assert (out / "recovered" / "img0.png").stat().st_mtime_ns == mtime
    assert len(json.loads((out / "report.json").read_text())["images"]) == 4


def test_empty_and_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("recover", tmp_path / "empty", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no images" in r.output and "Traceback" not in r.output
    r = run("recover", tmp_path / "missing", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no such folder" in r.output


def test_out_inside_input_refused(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in")
    r = run("recover", inp, "--out", inp / "sub", "--prior", tiny_prior_dir, *FAST)
    assert r.exit_code == 2 and "must not be the input folder" in r.output
    assert not (inp / "sub").exists()


def test_unknown_task_and_prior(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in")
    r = run("recover", inp, "--out", tmp_path / "o", "--task", "nope", "--prior", tiny_prior_dir, *FAST)
    assert r.exit_code == 2 and "valid: gray_blur" in r.output
    r = run("recover", inp, "--out", tmp_path / "o", "--prior", "nope", *FAST)
    assert r.exit_code == 2 and "unknown prior" in r.output


def test_corrupt_then_compare(tmp_path, tiny_prior_dir):
    clean = _folder(tmp_path / "clean", n=2)
    r = run("corrupt", clean, "--task", "gray_blur", "--out", tmp_path / "obs", "--seed", "0")
    assert r.exit_code == 0, r.output
    im = np.asarray(Image.open(tmp_path / "obs" / "img0.png"))
    assert im.ndim == 2 and im.max() <= 120  # gray, truncated at 120
    r = run("compare", tmp_path / "obs", "--task", "gray_blur", "--out", tmp_path / "cmp", "--clean", clean,
            "--prior", tiny_prior_dir, *FAST)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert {"mimic", "pgd", "gain_psnr_db"} <= set(m)
    assert (tmp_path / "cmp" / "grid.png").exists()
    assert (tmp_path / "cmp" / "mimic" / "recovered" / "img0.png").exists()
    assert (tmp_path / "cmp" / "pgd" / "recovered" / "img1.png").exists()
    assert "gain" in r.output


def test_tasks_and_corruptions_list():
    r = run("tasks")
    assert r.exit_code == 0 and "gray_blur" in r.output and "inpainting" in r.output
    r = run("corruptions")
    assert "remove_pixel" in r.output


def _smooth_folder(path, prefix, seed, edit):
    """Two smooth 64x64 RGB images, each passed through ``edit(uint8 array, rng)``, saved as PREFIX{i}.png."""
    from scipy.ndimage import gaussian_filter

    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(2):
        im = gaussian_filter(rng.normal(size=(64, 64, 3)), (4, 4, 0))
        im = np.round(127.5 + 90 * im / np.abs(im).max()).astype(np.uint8)
        Image.fromarray(edit(im, rng)).save(path / f"{prefix}{i}.png")
    return path


def test_recover_folder_reports_fill_pixels(tmp_path, tiny_prior_dir):
    def remove_half(im, rng):
        im[rng.random((64, 64)) < 0.5] = 128  # half of the pixels removed (mid-gray)
        return im

    inp = _smooth_folder(tmp_path / "holes", "h", 1, remove_half)
    r = run("recover", inp, "--out", tmp_path / "out", "--prior", tiny_prior_dir, *FAST)
    assert r.exit_code == 0, r.output
    assert "2 image(s) hold a constant fill value in 5" in r.output  # 50% removed, plus pixels that were 128
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all(abs(x["fill"] - 0.5) < 0.05 for x in rep["images"])
    r = run("recover", inp, "--out", tmp_path / "out2", "--prior", tiny_prior_dir, "--no-fill", *FAST)
    assert r.exit_code == 0 and "fill value" not in r.output


def test_recover_clip_option_reaches_the_engine(tmp_path, tiny_prior_dir):
    inp = _smooth_folder(tmp_path / "bright", "b", 2, lambda im, rng: im.clip(max=140))  # truncated at 140
    outs = {}
    for flag in ("--clip", "--no-clip"):
        out = tmp_path / flag.strip("-")
        r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, flag, *FAST)
        assert r.exit_code == 0, r.output
        rep = json.loads((out / "report.json").read_text())
        assert rep["settings"]["schedule"]["clip"] is (flag == "--clip")
        outs[flag] = np.asarray(Image.open(out / "recovered" / "b0.png"))
    assert not np.array_equal(outs["--clip"], outs["--no-clip"])  # the truncated pixels are fitted differently


def test_listings_as_json():
    from mimic.corruptions import list_corruptions
    from mimic.priors import list_priors
    from mimic.tasks import TASKS

    r = run("tasks", "--json")
    assert r.exit_code == 0
    tasks = json.loads(r.stdout)
    assert [t["name"] for t in tasks] == list(TASKS)
    gb = next(t for t in tasks if t["name"] == "gray_blur")
    assert gb["corruption"] == "gray_blur" and gb["prior"] == "celeba64"
    assert gb["config"]["lr_s"] == TASKS["gray_blur"].config.lr_s and "warm_steps" in gb["config"]
    r = run("corruptions", "--json")
    assert r.exit_code == 0
    corr = json.loads(r.stdout)
    assert [c["name"] for c in corr] == list_corruptions()
    assert all(set(c) == {"name", "domain", "params"} and isinstance(c["params"], dict) for c in corr)
    r = run("priors", "--json")
    assert r.exit_code == 0
    priors = json.loads(r.stdout)
    assert [p["name"] for p in priors] == list_priors()
    celeba = next(p for p in priors if p["name"] == "celeba64")
    assert "non-commercial" in celeba["terms"] and celeba["quality"] and "generator.safetensors" in celeba["sha256"]


BENCHES = ["speed", "scale", "blind", "reconstruct", "shifted", "unseen", "classify", "defense"]


@pytest.mark.parametrize("bench", BENCHES)
def test_every_bench_takes_trust_unverified(bench):
    r = run("bench", bench, "--help")
    assert r.exit_code == 0 and "--trust-unverified" in r.output


def _unverified(src, dst):
    import shutil

    shutil.copytree(src, dst)
    (dst / "card.json").write_text(json.dumps({"name": dst.name}))  # no sha256 for the weights
    return dst


@pytest.mark.parametrize("bench", ["blind", "reconstruct", "shifted", "unseen", "classify", "defense"])
def test_bench_trust_unverified_reaches_the_loaders(bench, tmp_path, tiny_prior_dir, tiny_fmnist_dirs):
    """Refused without --trust-unverified; with it the prior (and the classifier) load and the bench goes on to read
    its (here empty) --data folder."""
    empty = tmp_path / "empty"
    empty.mkdir()
    if bench in ("classify", "defense"):
        pytest.importorskip("matplotlib")
        cases = [["--prior", _unverified(tiny_fmnist_dirs[0], tmp_path / "p"), "--classifier", tiny_fmnist_dirs[1]],
                 ["--prior", tiny_fmnist_dirs[0], "--classifier", _unverified(tiny_fmnist_dirs[1], tmp_path / "c")]]
    else:
        cases = [["--prior", _unverified(tiny_prior_dir, tmp_path / "p")]]
    for args in cases:
        base = ["bench", bench, "--out", tmp_path / "out", *args, "--data", empty, "--device", "cpu"]
        r = run(*base)
        assert r.exit_code == 2 and "unverified weights" in r.output and "--trust-unverified" in r.output, r.output
        r = run(*base, "--trust-unverified")
        assert r.exit_code == 2 and "unverified weights" not in r.output and str(empty) in r.output, r.output


def test_bench_speed_trust_unverified_reaches_load_prior(monkeypatch):
    import mimic.bench.speed as speed
    from mimic.priors import PriorError

    seen = []

    def load_prior(prior, **kw):
        seen.append(kw.get("trust_unverified"))
        raise PriorError("stop here")

    monkeypatch.setattr(speed, "load_prior", load_prior)
    for flag in ([], ["--trust-unverified"]):
        r = run("bench", "speed", "--device", "cpu", *flag)
        assert r.exit_code == 2 and "stop here" in r.output
    assert seen == [False, True]
