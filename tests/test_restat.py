"""tools/restat.py on small synthetic result files: Student's t for means, paired gains, Wilson for accuracies,
and a second run that changes nothing."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

_spec = importlib.util.spec_from_file_location("restat", Path(__file__).resolve().parent.parent / "tools" / "restat.py")
restat = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(restat)


def _blind(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    pgd = rng.normal(16, 2, 10)
    mimic = pgd + rng.normal(1, 0.5, 10)
    s_pgd, s_mimic = rng.uniform(0.4, 0.6, 10), rng.uniform(0.5, 0.7, 10)
    old = lambda v: 1.96 * np.std(v, ddof=1) / np.sqrt(len(v))  # noqa: E731 (the former normal interval)
    rows = [{"task": "gray_blur", "method": "pgd", "n": 10, "psnr_mean": float(pgd.mean()), "psnr_ci95": old(pgd),
             "ssim_mean": float(s_pgd.mean()), "ssim_ci95": old(s_pgd), "seconds": 1.0, "device": "cpu"},
            {"task": "gray_blur", "method": "mimic", "n": 10, "psnr_mean": float(mimic.mean()),
             "psnr_ci95": old(mimic), "ssim_mean": float(s_mimic.mean()), "ssim_ci95": old(s_mimic), "seconds": 2.0,
             "device": "cpu", "gain_over_pgd_db": float((mimic - pgd).mean()), "gain_ci95": old(mimic - pgd)}]
    d = {"bench": "blind", "results": rows, "settings": {"n": 10},
         "per_image": {"gray_blur": {"observed": list(pgd - 2),
                                     "pgd": {"psnr": pgd.tolist(), "ssim": s_pgd.tolist()},
                                     "mimic": {"psnr": mimic.tolist(), "ssim": s_mimic.tolist()}}}}
    path = tmp_path / "blind" / "blind.json"
    path.parent.mkdir()
    path.write_text(json.dumps(d, indent=2) + "\n")
    return path


def _classify(tmp_path) -> Path:
    labels = [i % 10 for i in range(100)]
    pred = [lab if i < 90 else (lab + 1) % 10 for i, lab in enumerate(labels)]  # 90 of 100 right
    d = {"bench": "classify",
         "results": [{"corruption": "binarize", "method": "mimic", "n": 100, "accuracy": 90.0, "accuracy_ci95": 5.9,
                      "seconds": 0.0, "device": "cpu"},
                     {"corruption": "binarize", "method": "pgd", "n": 100, "accuracy": 0.0, "accuracy_ci95": 1.8,
                      "seconds": 0.0, "device": "cpu"}],  # no per-image predictions: from accuracy and n
         "settings": {"n": 100}, "per_image": {"binarize": {"mimic": pred}, "labels": labels}}
    path = tmp_path / "classify" / "classify.json"
    path.parent.mkdir()
    path.write_text(json.dumps(d, indent=2) + "\n")
    return path


def test_restat_blind_student_t_and_paired_gain(tmp_path):
    path = _blind(tmp_path)
    r = restat.restat_file(path)
    assert r.json_changed and r.md_changed and not r.notes
    d = json.loads(path.read_text())
    pi = d["per_image"]["gray_blur"]
    t = stats.t.ppf(0.975, 9)
    p = np.asarray(pi["mimic"]["psnr"])
    pgd, mimic = d["results"]
    assert mimic["psnr_ci95"] == pytest.approx(t * p.std(ddof=1) / np.sqrt(10), rel=1e-12)
    g = p - np.asarray(pi["pgd"]["psnr"])
    assert mimic["gain_ci95"] == pytest.approx(t * g.std(ddof=1) / np.sqrt(10), rel=1e-12)
    s = np.asarray(pi["pgd"]["ssim"])
    assert pgd["ssim_ci95"] == pytest.approx(t * s.std(ddof=1) / np.sqrt(10), rel=1e-12)
    assert "gain_ci95" not in pgd
    assert f"± {mimic['psnr_ci95']:.2f}" in (path.parent / "blind.md").read_text()


def test_restat_accuracy_wilson(tmp_path):
    path = _classify(tmp_path)
    r = restat.restat_file(path)
    assert len(r.notes) == 1 and "binarize/pgd" in r.notes[0]  # the row without predictions
    mimic, pgd = json.loads(path.read_text())["results"]
    lo, hi = mimic["accuracy_ci95"]
    assert mimic["accuracy"] == 90.0 and abs(lo - 82.6) < 0.1 and abs(hi - 94.5) < 0.1  # Wilson, not 90 ± 5.9
    assert pgd["accuracy_ci95"][0] == 0.0 and 3.6 < pgd["accuracy_ci95"][1] < 3.8  # 0 of 100
    assert "90.0 [82.6, 94.5]" in (path.parent / "classify.md").read_text()


def test_restat_idempotent(tmp_path):
    paths = [_blind(tmp_path), _classify(tmp_path)]
    for p in paths:
        restat.restat_file(p)
    before = {f: f.read_bytes() for p in paths for f in (p, p.with_suffix(".md"))}
    for p in paths:
        r = restat.restat_file(p)
        assert not r.json_changed and not r.md_changed
    assert {f: f.read_bytes() for f in before} == before


def test_tables_mark_ssim_measured_with_the_old_window():
    from mimic.bench import blind, reconstruct
    from mimic.metrics import SSIM_WINDOW

    row = {"task": "t", "method": "pgd", "n": 2, "psnr_mean": 20.0, "psnr_ci95": 1.0, "ssim_mean": 0.5,
           "ssim_ci95": 0.1, "corruption": "c", "mse_mean": 0.01}
    for table in (blind.markdown_table, reconstruct.markdown_table):
        old = table([row])
        assert "†" in old and "7x7 uniform window" in old
        new = table([{**row, "ssim_window": SSIM_WINDOW}])
        assert "†" not in new
