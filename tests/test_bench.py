import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mimic.cli.main import cli
from mimic.tasks import get_task

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
    md = (tmp_path / "blind.md").read_text()
    assert "| negative | mimic |" in md
    assert "| task | pgd | mimic | oracle | pgd_r2 | MimicGAN - PGD (dB) | oracle gap closed |" in md
    gains = [x["gain_over_pgd_db"] for x in rows if x["method"] == "mimic"]
    assert "| mean of 2 |" in md and f"{sum(gains) / 2:+.2f}" in md.split("| mean of 2 |")[1].splitlines()[0]
    assert (tmp_path / "fig2_negative.png").exists() and (tmp_path / "fig_traces.png").exists()
    tr = res["traces"]["negative"]["mimic"]
    assert [e["t"] for e in tr] == [0, 1, 2] and all(e["psnr"] > 0 for e in tr)


def test_bench_speed_runs(tiny_prior_dir):
    from mimic.bench.speed import bench_speed

    rows = bench_speed(prior=str(tiny_prior_dir), devices=["cpu"], groups=(1, 2), batch=2, outer=1, warm=2, full=False)
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
    assert ("remove_pixel_0.95", "pgd") in methods and ("remove_pixel_0.95", "pgd_fill") in methods
    assert ("convolve_noise", "biharmonic") not in methods
    assert all(x["mse_mean"] >= 0 and x["n"] == 2 for x in rows)
    mse = {(x["corruption"], x["method"]): x["mse_mean"] for x in rows}
    # keeping the observed pixels (exact outside the band) helps where fill is found, and the denoised residual
    # where none is (the untrained prior's G(z) is far from the faces: most of the gain is the residual's)
    assert mse["patch_band", "mimic_keep"] < mse["patch_band", "mimic"]
    assert mse["convolve_noise", "mimic_keep"] < 0.5 * mse["convolve_noise", "mimic"]
    assert mse["patch_band", "pgd_keep"] < mse["patch_band", "pgd_fill"]
    assert mse["convolve_noise", "pgd_keep"] < 0.5 * mse["convolve_noise", "pgd_fill"]
    # a re-run of one method keeps the other methods' rows, per-image figures and figure rows
    first = json.loads((tmp_path / "reconstruct.json").read_text())
    figs = {c: (tmp_path / f["file"]).read_bytes() for c, f in first["figures"].items()}
    (tmp_path / "figures" / "patch_band.png").unlink()  # kept rows missing from the figure: the re-run still writes one
    r = CliRunner().invoke(cli, ["bench", "reconstruct", "--quick", "--out", str(tmp_path), "--prior", str(tiny_prior_dir),
                                 "--data", str(EXAMPLES / "clean"), "--n", "2", "--device", "cpu", "--methods", "mimic"])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "reconstruct.json").read_text())
    strip = lambda rows: [{k: v for k, v in x.items() if k != "seconds"} for x in rows]  # noqa: E731
    assert strip(again["results"]) == strip(first["results"])  # same order; mimic recomputed bit-identically (CPU)
    assert again["per_image"] == first["per_image"]
    # the kept rows cut from the earlier figure and mimic's row redrawn: the same figure, byte for byte
    assert (tmp_path / "figures" / "remove_pixel_0.9.png").read_bytes() == figs["remove_pixel_0.9"]
    assert again["figures"]["remove_pixel_0.9"] == first["figures"]["remove_pixel_0.9"]
    assert again["figures"]["patch_band"]["rows"] == ["observed", "mimic", "clean"]
    from mimic.io import read_image
    h_old = read_image(io.BytesIO(figs["patch_band"])).shape[0]
    assert (read_image(tmp_path / "figures" / "patch_band.png").shape[0] - 2) * 9 == (h_old - 2) * 3
    # a re-run of some corruptions keeps the others' rows, per-image figures and figures as they were
    r = CliRunner().invoke(cli, ["bench", "reconstruct", "--quick", "--out", str(tmp_path), "--prior", str(tiny_prior_dir),
                                 "--data", str(EXAMPLES / "clean"), "--n", "2", "--device", "cpu", "--methods", "pgd",
                                 "--corruptions", "patch_band"])
    assert r.exit_code == 0, r.output
    third = json.loads((tmp_path / "reconstruct.json").read_text())
    assert strip(third["results"]) == strip(again["results"])  # pgd on patch_band recomputed bit-identically
    assert third["per_image"] == again["per_image"]
    assert {c: f for c, f in third["figures"].items() if c != "patch_band"} == {
        c: f for c, f in again["figures"].items() if c != "patch_band"}
    assert third["figures"]["patch_band"]["rows"] == ["observed", "mimic", "pgd", "clean"]
    r = CliRunner().invoke(cli, ["bench", "reconstruct", "--quick", "--out", str(tmp_path), "--corruptions", "nope"])
    assert r.exit_code == 2 and "nope" in r.output and "patch_band" in r.output
    # other settings: nothing is kept
    r = CliRunner().invoke(cli, ["bench", "reconstruct", "--quick", "--out", str(tmp_path), "--prior", str(tiny_prior_dir),
                                 "--data", str(EXAMPLES / "clean"), "--n", "2", "--device", "cpu", "--methods", "mimic",
                                 "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert {x["method"] for x in json.loads((tmp_path / "reconstruct.json").read_text())["results"]} == {"mimic"}


def test_bench_shifted_quick(tmp_path, tiny_prior_dir):
    import math

    args = ["bench", "shifted", "--quick", "--out", str(tmp_path), "--prior", str(tiny_prior_dir), "--data",
            str(EXAMPLES / "clean"), "--offset", "0", "--n", "3", "--tasks", "negative", "--device", "cpu"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "shifted.json").read_text())
    assert res["meta"]["faces"] == f"3 images of {EXAMPLES / 'clean'} from offset 0" and res["meta"]["quick"]
    rows = res["results"]
    settings = ["negative", "negative ksize=5", "negative ksize=17"]
    assert {(x["setting"], x["method"]) for x in rows} == {(s, m) for s in settings
                                                           for m in ("observed", "pgd", "mimic", "blind")}
    for x in rows:
        assert x["n"] == 3 and len(x["psnr"]) == 3 and math.isfinite(x["psnr_mean"]) and x["psnr_mean"] > 0
        assert ("gain_over_pgd_db" in x) == (x["method"] in ("mimic", "blind"))
        if "gain_over_pgd_db" in x:
            pgd = next(p for p in rows if p["setting"] == x["setting"] and p["method"] == "pgd")
            assert math.isclose(x["gain_over_pgd_db"], x["psnr_mean"] - pgd["psnr_mean"], abs_tol=1e-9)
    md = (tmp_path / "shifted.md").read_text().splitlines()
    assert md[0] == "| setting | observed | PGD | MimicGAN (task preset) | gain | blind preset | gain |"
    assert [line.split(" | ")[0][2:] for line in md[2:]] == settings  # the bench's setting order
    # a re-run of one method on the tuned settings keeps every other row, and recomputes its own bit for bit
    r = CliRunner().invoke(cli, args + ["--methods", "blind", "--which", "tuned"])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "shifted.json").read_text())["results"]
    key = lambda x: (x["setting"], x["method"])  # noqa: E731
    strip = lambda rows: sorted(({k: v for k, v in x.items() if k != "seconds"} for x in rows), key=key)  # noqa: E731
    assert strip(again) == strip(rows)
    # the smoke run never defaults to the committed results
    r = CliRunner().invoke(cli, ["bench", "shifted", "--quick", "--prior", str(tiny_prior_dir)])
    assert r.exit_code == 2 and "--out" in r.output


def test_parse_overrides():
    from mimic.bench.report_utils import parse_overrides

    assert parse_overrides("") == {}
    assert parse_overrides("lr_s=1e-2,inits=('identity', 'negated'),robust_stat='signed',T=54") == {
        "lr_s": 0.01, "inits": ("identity", "negated"), "robust_stat": "signed", "T": 54}


def test_biharmonic_fills_holes_better_than_zeros():
    import numpy as np

    from mimic.bench.reconstruct import biharmonic

    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([(xx * 8) % 256, (yy * 8) % 256, np.full_like(xx, 128)], -1).astype(np.uint8)[None]
    keep = np.random.default_rng(0).random((1, 32, 32, 1)) > 0.5
    obs = img * keep
    rec = biharmonic(obs, keep)
    assert np.abs(rec.astype(int) - img).mean() < np.abs(obs.astype(int) - img).mean() / 3


def test_dip_networks_fitted_together_are_independent():
    import torch

    from mimic.bench.reconstruct import dip

    y = torch.rand(2, 3, 16, 16) * 2 - 1
    y2 = y.clone()
    y2[1] = -y2[1]  # change only the second observation
    a, b = dip(y, None, steps=5, chunk=2), dip(y2, None, steps=5, chunk=2)
    assert torch.equal(a[0], b[0])  # the first network never sees the second image
    assert not torch.equal(a[1], b[1])


def test_dip_fits_the_observed_pixels():
    import torch

    from mimic.bench.reconstruct import dip

    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    keep = (torch.rand(1, 1, 16, 16, generator=g) > 0.5).float()
    err = lambda r: (((r - y) ** 2) * keep).sum() / keep.expand_as(y).sum()  # noqa: E731
    assert err(dip(y, keep, steps=150)) < 0.5 * err(dip(y, keep, steps=1))


def test_bench_classify_quick(tmp_path, tiny_fmnist_dirs, fmnist_root):
    prior, clf = tiny_fmnist_dirs
    r = CliRunner().invoke(cli, ["bench", "classify", "--quick", "--out", str(tmp_path), "--prior", str(prior),
                                 "--classifier", str(clf), "--n", "6", "--batch-size", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "classify.json").read_text())
    pairs = {(x["corruption"], x["method"]) for x in res["results"]}
    assert pairs == {("none", "clean")} | {(c, m) for c in ("binarize", "drop_pixels", "blur_negative")
                                           for m in ("observed", "pgd", "mimic")}
    for x in res["results"]:
        assert x["n"] == 6 and 0 <= x["accuracy"] <= 100
    assert len(res["per_image"]["binarize"]["mimic"]) == 6
    assert (tmp_path / "classify.png").exists() and (tmp_path / "classify_binarize.png").exists()
    assert "| drop_pixels | mimic | 6 |" in (tmp_path / "classify.md").read_text()


def test_bench_classify_rerun_keeps_other_rows(tmp_path, tiny_fmnist_dirs, fmnist_root):
    """A re-run of one corruption and method replaces those rows and keeps the rest of the table."""
    prior, clf = tiny_fmnist_dirs
    base = ["bench", "classify", "--quick", "--out", str(tmp_path), "--prior", str(prior), "--classifier", str(clf),
            "--n", "6", "--batch-size", "3", "--device", "cpu"]
    r = CliRunner().invoke(cli, base + ["--corruptions", "binarize,drop_pixels"])
    assert r.exit_code == 0, r.output
    first = json.loads((tmp_path / "classify.json").read_text())
    r = CliRunner().invoke(cli, base + ["--corruptions", "binarize", "--methods", "mimic"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "classify.json").read_text())
    key = lambda x: (x["corruption"], x["method"])  # noqa: E731
    assert [key(x) for x in res["results"]] == [key(x) for x in first["results"]]  # same rows, same order
    old, new = ({key(x): x for x in d["results"]} for d in (first, res))
    assert new[("drop_pixels", "mimic")] == old[("drop_pixels", "mimic")]  # kept as it was
    assert new[("binarize", "pgd")] == old[("binarize", "pgd")]
    assert new[("binarize", "mimic")]["seconds"] != old[("binarize", "mimic")]["seconds"]  # redone
    assert res["per_image"]["drop_pixels"] == first["per_image"]["drop_pixels"]
    assert new[("binarize", "mimic")]["config"]["lr_s"] == get_task("binarize").config.lr_s
    assert new[("binarize", "pgd")]["config"]["method"] == "pgd"
    import numpy as np

    with np.load(tmp_path / "classify_samples.npz") as f:  # recoveries kept for the figures; no test images stored
        assert "drop_pixels/mimic" in f.files and not any(k.endswith("/clean") for k in f.files)
    # different settings (n): nothing of the earlier run is kept
    r = CliRunner().invoke(cli, base[:-6] + ["--n", "4", "--batch-size", "3", "--device", "cpu",
                                             "--corruptions", "binarize", "--methods", "mimic"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "classify.json").read_text())
    assert {key(x) for x in res["results"]} == {("none", "clean"), ("binarize", "observed"), ("binarize", "mimic")}


def test_fmnist_subset_is_seeded(fmnist_root):
    from mimic.bench.classify import fmnist_test_subset

    a, la, ia = fmnist_test_subset(20, seed=3)
    b, lb, ib = fmnist_test_subset(20, seed=3)
    c, _, ic = fmnist_test_subset(20, seed=4)
    assert a.shape == (20, 28, 28, 1) and a.dtype == "uint8" and (ia == ib).all() and (a == b).all()
    assert not (ia == ic).all() and len(set(ia.tolist())) == 20


def test_accuracy_ci95():
    import numpy as np

    from mimic.bench.classify import accuracy_ci95

    acc, (lo, hi) = accuracy_ci95(np.array([True] * 90 + [False] * 10))
    assert acc == 90.0 and abs(lo - 82.6) < 0.1 and abs(hi - 94.5) < 0.1  # Wilson: not centred on 90
    acc, (lo, hi) = accuracy_ci95(np.zeros(500, bool))
    assert acc == 0.0 and lo == 0.0 and 0.7 < hi < 0.8  # not "0.0 ± 0.4"
    from mimic.bench.classify import accuracy_text

    assert accuracy_text(acc, [lo, hi]) == "0.0 [0.0, 0.8]"
    assert accuracy_text(90.0, 5.9) == "90.0 ± 5.9"  # a row of a run that stored a half-width


def test_bench_defense_quick(tmp_path, tiny_fmnist_dirs, fmnist_root):
    import pytest

    pytest.importorskip("art")
    prior, clf = tiny_fmnist_dirs
    r = CliRunner().invoke(cli, ["bench", "defense", "--quick", "--out", str(tmp_path), "--prior", str(prior),
                                 "--classifier", str(clf), "--n", "4", "--attacks", "fgsm", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "defense.json").read_text())
    pairs = {(x["attack"], x["method"]) for x in res["results"]}
    for a in ("none", "fgsm"):
        assert {(a, d) for d in ("none", "defense_gan", "cowboy", "mimic")} <= pairs
    assert ("bpda", "mimic") in pairs and ("bpda", "defense_gan") in pairs
    assert any(a.startswith("universal@") for a, _ in pairs)
    fg = [x for x in res["results"] if x["attack"] == "fgsm"]
    assert all(0 < x["linf"] <= 0.3 + 1e-4 for x in fg)  # the budget holds (on [0, 1])
    assert (tmp_path / "defense_universal.png").exists()


def test_bench_defense_rerun_keeps_other_rows(tmp_path, tiny_fmnist_dirs, fmnist_root):
    """A --defenses (or --attacks) re-run into a folder with the same settings replaces those rows and keeps the
    others, with their per-image predictions and sample images; other settings keep nothing."""
    import pytest

    pytest.importorskip("art")
    prior, clf = tiny_fmnist_dirs
    base = ["bench", "defense", "--quick", "--out", str(tmp_path), "--prior", str(prior), "--classifier", str(clf),
            "--n", "4", "--device", "cpu"]
    r = CliRunner().invoke(cli, base + ["--attacks", "fgsm"])
    assert r.exit_code == 0, r.output
    first = json.loads((tmp_path / "defense.json").read_text())
    png = (tmp_path / "defense_fgsm.png").read_bytes()
    r = CliRunner().invoke(cli, base + ["--attacks", "fgsm", "--defenses", "mimic"])
    assert r.exit_code == 0, r.output
    second = json.loads((tmp_path / "defense.json").read_text())
    key = lambda x: (x["attack"], x["method"])
    assert [key(x) for x in second["results"]] == [key(x) for x in first["results"]]  # same rows, same order
    for a, b in zip(first["results"], second["results"]):
        if a["method"] != "mimic":
            assert b == {**a, "device": "cpu"}  # kept as they were
        else:
            assert b["accuracy"] == a["accuracy"]  # re-run: the same seed gives the same predictions
    assert second["per_image"] == first["per_image"]
    assert (tmp_path / "defense_fgsm.png").read_bytes() == png  # kept defenses' samples beside the re-run's
    # an attack added later joins the kept table
    r = CliRunner().invoke(cli, base + ["--attacks", "bim", "--defenses", "none,mimic"])
    assert r.exit_code == 0, r.output
    third = json.loads((tmp_path / "defense.json").read_text())
    pairs = [key(x) for x in third["results"]]
    assert ("fgsm", "defense_gan") in pairs and ("bim", "mimic") in pairs and ("bim", "defense_gan") not in pairs
    assert pairs.index(("fgsm", "mimic")) < pairs.index(("bim", "none"))  # attacks in the bench's order
    assert set(third["settings"]["attacks"]) == {"fgsm", "bim"}
    # another seed: nothing kept
    r = CliRunner().invoke(cli, base + ["--attacks", "bim", "--defenses", "mimic", "--seed", "1"])
    assert r.exit_code == 0, r.output
    fourth = json.loads((tmp_path / "defense.json").read_text())
    assert {x["method"] for x in fourth["results"]} == {"mimic"}


def _resume_args(out, prior_dir) -> list:
    """`bench blind --quick` on 2 example faces with PGD and MimicGAN (the resume tests add --tasks)."""
    return ["bench", "blind", "--quick", "--out", str(out), "--prior", str(prior_dir),
            "--data", str(EXAMPLES / "clean"), "--methods", "pgd,mimic", "--n", "2", "--device", "cpu"]


def test_bench_blind_resumes(tmp_path, tiny_prior_dir):
    args = _resume_args(tmp_path, tiny_prior_dir)
    r = CliRunner().invoke(cli, args + ["--tasks", "negative"])
    assert r.exit_code == 0, r.output
    first = json.loads((tmp_path / "blind.json").read_text())["results"]
    r = CliRunner().invoke(cli, args + ["--tasks", "negative,stylize"])
    assert r.exit_code == 0, r.output
    assert "negative      pgd     resumed" in r.output and "negative      mimic   resumed" in r.output
    rows = json.loads((tmp_path / "blind.json").read_text())["results"]
    assert [x for x in rows if x["task"] == "negative"] == first
    assert {x["task"] for x in rows} == {"negative", "stylize"}
    assert (tmp_path / "rec" / "stylize" / "mimic" / "0001.png").exists()
    r = CliRunner().invoke(cli, args + ["--tasks", "stylize"])  # other tasks' rows are kept
    # in the paper's task order (stylize before negative), whichever task a run redid
    assert [x["task"] for x in json.loads((tmp_path / "blind.json").read_text())["results"]] == \
        ["stylize", "stylize", "negative", "negative"]


def _supervised_negative(pr, faces):
    """Train the supervised reference on ``negative`` briefly; -> (recovery, observation, info), uint8."""
    import torch

    from mimic.bench.supervised import apply_supervised, train_supervised
    from mimic.corruptions import get_corruption
    from mimic.io import to_tensor, to_uint8

    net, info = train_supervised("negative", pr, faces, steps=60, batch_size=8, lr=2e-3)
    y = to_uint8(get_corruption("negative")(to_tensor(faces), generator=torch.Generator().manual_seed(1)))
    return apply_supervised(net, y), y, info


def test_supervised_reference_learns(faces, tiny_prior_dir):
    import numpy as np

    from mimic.metrics import psnr
    from mimic.priors import load_prior

    rec, y, info = _supervised_negative(load_prior(tiny_prior_dir), faces)
    assert rec.shape == faces.shape and rec.dtype == np.uint8
    assert info["history"][-1]["loss"] < info["history"][0]["loss"]
    assert psnr(rec, faces).mean() > psnr(y, faces).mean() + 3  # a negated face is easy to learn to undo


def test_supervised_reference_is_not_pulled_off_by_an_exploitable_discriminator(faces, tiny_prior_dir):
    """A discriminator whose logit rises without bound with brightness, already sure the faces are real:
    the bounded adversarial term leaves the L1 fit alone; log(1 - D) would whiten the output."""
    from mimic.metrics import psnr
    from mimic.priors import load_prior

    pr = load_prior(tiny_prior_dir)
    pr.D = lambda x: 1e4 * (x.mean(dim=(1, 2, 3)) + 0.9)  # faces' mean is far above -0.9: logit >> 0
    rec, y, _ = _supervised_negative(pr, faces)
    assert psnr(rec, faces).mean() > psnr(y, faces).mean() + 3
    assert abs(rec.astype(float).mean() - faces.astype(float).mean()) < 20  # not whitened


def test_every_attack_keeps_its_budget(fmnist_root, tiny_fmnist_dirs):
    import numpy as np
    import pytest

    pytest.importorskip("art")
    from mimic.bench.classify import fmnist_test_subset
    from mimic.bench.defense import ATTACKS, art_classifier, run_attack
    from mimic.io import to_tensor
    from mimic.priors import load_classifier

    import torch

    x8, y, _ = fmnist_test_subset(3, seed=0)
    x = to_tensor(x8).numpy()
    est = art_classifier(load_classifier(tiny_fmnist_dirs[1]), torch.device("cpu"))
    for name in ("fgsm", "bim", "deepfool"):
        params = {**ATTACKS[name], **({"max_iter": 3} if "max_iter" in ATTACKS[name] else {})}
        xa = run_attack(name, est, x, y, params)
        assert xa.shape == x.shape and np.isfinite(xa).all() and xa.min() >= -1 and xa.max() <= 1
        if "eps" in params:
            assert np.abs(xa - x).max() <= 2 * params["eps"] + 1e-5  # [0, 1] budget doubled on [-1, 1]


def test_bench_blind_interrupted_resume_keeps_earlier_rows(tmp_path, tiny_prior_dir, monkeypatch):
    """A resumed run that is interrupted before it reaches a task keeps that task's earlier rows."""
    import mimic.bench.blind as blind

    kw = dict(prior=str(tiny_prior_dir), data=str(EXAMPLES / "clean"), n=2, device="cpu", quick=True,
              log=lambda *a: None)
    blind.bench_blind(tmp_path, tasks=("negative", "stylize"), methods=("pgd", "mimic"), **kw)
    first = json.loads((tmp_path / "blind.json").read_text())
    real = blind.recover

    def interrupted(*a, **k):
        if k.get("task") == "stylize":
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(blind, "recover", interrupted)
    with pytest.raises(KeyboardInterrupt):  # adds pgd_r2 to both tasks, interrupted in the second
        blind.bench_blind(tmp_path, tasks=("negative", "stylize"), methods=("pgd", "mimic", "pgd_r2"), **kw)
    res = json.loads((tmp_path / "blind.json").read_text())
    pairs = {(x["task"], x["method"]) for x in res["results"]}
    assert pairs == {("negative", "pgd"), ("negative", "mimic"), ("negative", "pgd_r2"),
                     ("stylize", "pgd"), ("stylize", "mimic")}
    assert [x for x in res["results"] if x["task"] == "stylize"] == \
        [x for x in first["results"] if x["task"] == "stylize"]
    assert res["per_image"]["stylize"] == first["per_image"]["stylize"]
    assert "| stylize | " in (tmp_path / "blind.md").read_text()


def test_bench_blind_rerun_of_some_methods_keeps_the_others(tmp_path, tiny_prior_dir):
    """Re-measuring some methods of a task (here pgd and mimic, recomputed) keeps the rows of those it skips."""
    import shutil

    import mimic.bench.blind as blind

    kw = dict(prior=str(tiny_prior_dir), data=str(EXAMPLES / "clean"), n=2, device="cpu", quick=True,
              log=lambda *a: None)
    blind.bench_blind(tmp_path, tasks=("negative",), methods=("pgd", "mimic", "oracle"), **kw)
    first = json.loads((tmp_path / "blind.json").read_text())
    for m in ("pgd", "mimic"):
        shutil.rmtree(tmp_path / "rec" / "negative" / m)  # as if measured elsewhere: they are recomputed
    res = blind.bench_blind(tmp_path, tasks=("negative",), methods=("pgd", "mimic"), **kw)
    assert [x["method"] for x in res["results"]] == ["pgd", "mimic", "oracle"]
    old = {x["method"]: x for x in first["results"]}
    new = {x["method"]: x for x in res["results"]}
    assert new["oracle"]["psnr_mean"] == old["oracle"]["psnr_mean"]
    assert res["per_image"]["negative"]["oracle"] == first["per_image"]["negative"]["oracle"]
    assert "gain_over_pgd_db" in new["oracle"] and "oracle_gap_closed" in new["mimic"]  # recomputed with the kept oracle
    assert "| negative | oracle |" in (tmp_path / "blind.md").read_text()


def test_bench_blind_rows_are_kept_across_a_prior_file_other_than_its_weights(tmp_path, tiny_prior_dir):
    """A run recorded before the prior shipped another file (group_stats.json) keeps its rows; other weights
    discard them."""
    import shutil

    import mimic.bench.blind as blind

    kw = dict(prior=str(tiny_prior_dir), data=str(EXAMPLES / "clean"), n=2, device="cpu", quick=True,
              log=lambda *a: None)
    blind.bench_blind(tmp_path, tasks=("negative",), methods=("pgd", "oracle"), **kw)
    first = json.loads((tmp_path / "blind.json").read_text())

    def record(sha):  # as if the earlier run had recorded these checksums
        d = json.loads((tmp_path / "blind.json").read_text())
        d["settings"]["prior_sha256"] = sha
        (tmp_path / "blind.json").write_text(json.dumps(d))

    weights = {f: h for f, h in first["settings"]["prior_sha256"].items() if f.endswith(".safetensors")}
    record({**weights, "group_stats.json": "0" * 64})
    shutil.rmtree(tmp_path / "rec" / "negative" / "pgd")
    res = blind.bench_blind(tmp_path, tasks=("negative",), methods=("pgd",), **kw)
    assert [x["method"] for x in res["results"]] == ["pgd", "oracle"]
    record({f: "0" * 64 for f in weights})
    res = blind.bench_blind(tmp_path, tasks=("negative",), methods=("pgd",), **kw)
    assert [x["method"] for x in res["results"]] == ["pgd"]


def test_bench_blind_does_not_resume_recoveries_of_a_changed_preset(tmp_path, tiny_prior_dir, monkeypatch):
    """Saved recoveries are reused only if the preset that made them is unchanged: a preset edited between runs
    must not leave its old images (and figures) in the new table."""
    from dataclasses import replace

    import mimic.tasks as T

    args = _resume_args(tmp_path, tiny_prior_dir) + ["--tasks", "negative"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    old = T.TASKS["negative"]
    monkeypatch.setitem(T.TASKS, "negative", replace(old, config=old.config.replace(lr_s=2 * old.config.lr_s)))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "resumed" not in r.output
    monkeypatch.setitem(T.TASKS, "negative", old)  # back to the preset the first run used: resumed again
    assert CliRunner().invoke(cli, args).exit_code == 0
    r = CliRunner().invoke(cli, args)
    assert "negative      mimic   resumed" in r.output


@pytest.mark.parametrize("bench", ["blind", "reconstruct", "shifted", "classify", "defense"])
def test_benches_without_data_stop_with_one_line(bench, tmp_path, monkeypatch):
    """An installed package has no data beside it: one line naming --data and MIMIC_DATA, before any work."""
    from click.testing import CliRunner

    from mimic.cli.main import cli

    if bench == "defense":
        pytest.importorskip("art")
    monkeypatch.setenv("MIMIC_DATA", str(tmp_path / "nodata"))
    r = CliRunner().invoke(cli, ["bench", bench, "--quick", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "--data" in err and "MIMIC_DATA" in err, err


@pytest.mark.parametrize("bench", ["blind", "classify", "defense"])
def test_benches_without_matplotlib_name_the_extra_before_the_run(bench, tmp_path, monkeypatch):
    """matplotlib is the `bench` extra: a bench that draws figures says so at once, not after hours of work."""
    import sys

    from click.testing import CliRunner

    from mimic.cli.main import cli

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    r = CliRunner().invoke(cli, ["bench", bench, "--quick", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "mimicgan[bench]" in err, err


def test_method_overrides_keep_plain_rows_plain_and_adapting_rows_adapting():
    """pgd, oracle and presets without adaptation stay unadapted whatever the overrides (a quick run's short
    adaptation only shortens one that is on); the blind preset and *_adapt rows adapt, with the overrides' steps."""
    from mimic.bench.report_utils import QUICK_SCHEDULE, method_overrides
    from mimic.tasks import ADAPT, get_task

    q = dict(QUICK_SCHEDULE)
    assert get_task("blind").config.adapt_steps == ADAPT["adapt_steps"] > q["adapt_steps"] > 0
    assert method_overrides("pgd", q, "gray_blur")[1]["adapt_steps"] == 0
    assert method_overrides("oracle", q, "gray_blur")[1]["adapt_steps"] == 0
    assert method_overrides("mimic_r4", q, "gray_blur") == ("mimic", {**q, "restarts": 4, "adapt_steps": 0})
    assert method_overrides("mimic", q, None)[1]["adapt_steps"] == q["adapt_steps"]  # the blind preset adapts
    assert method_overrides("blind", q, "gray_blur")[1]["adapt_steps"] == q["adapt_steps"]
    assert method_overrides("blind", {}, "gray_blur") == ("blind", {})
    base, ov = method_overrides("pgd_adapt", {"T": 2}, "gray_blur")
    assert base == "pgd" and ov == {"T": 2, **ADAPT}
    assert method_overrides("oracle_adapt", q, "negative")[1] == {**q, **ADAPT, "adapt_steps": q["adapt_steps"]}
