"""The unseen-damage benchmark: its damage kinds, halves fixed in code, and a quick run end to end."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mimic.bench.unseen import DAMAGES, bench_unseen, damage, markdown_table, summary
from mimic.io import read_image, to_tensor
from mimic.metrics import psnr

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "clean"


@pytest.fixture(scope="module")
def faces():
    return np.stack([read_image(f) for f in sorted(EXAMPLES.glob("*.png"))[:4]])


def test_at_least_twelve_kinds_split_in_two_halves_spanning_the_families():
    assert len(DAMAGES) >= 12
    halves = {h: [d for d in DAMAGES.values() if d.half == h] for h in ("tune", "heldout")}
    assert set(halves) == {"tune", "heldout"} and abs(len(halves["tune"]) - len(halves["heldout"])) <= 1
    for need in ("tone", "colour", "compression", "blur", "noise", "resampling", "combination"):
        assert any(d.family == need for d in DAMAGES.values()), need
    for h in halves.values():  # each half holds global tone/colour damage
        assert {"tone", "colour"} <= {d.family for d in h}


def test_mild_half_is_five_kinds_closer_to_the_face_than_the_prior_range(faces):
    mild = [k for k, d in DAMAGES.items() if d.half == "mild"]
    assert len(mild) >= 5 and len({DAMAGES[k].family for k in mild}) == len(mild)
    x = to_tensor(faces)
    for k in mild:  # the observation itself beats the shipped prior's 22 dB projection of clean faces
        assert psnr(damage(k, x, 1), faces).mean() > 24, k


def test_summary_reports_each_kinds_change_from_the_observation():
    def row(kind, level, method, gain_obs):
        return {"kind": kind, "half": "mild", "family": "noise", "level": level, "strength": str(level),
                "method": method, "psnr_mean": 30.0 + gain_obs, "gain_over_observed_db": gain_obs}

    rows = [row("a", 0, "blind", -0.1), row("a", 1, "blind", -0.5), row("b", 0, "blind", 0.2),
            row("b", 1, "blind", 1.0), row("a", 0, "pgd", -9.0)]
    s = summary(rows)["mild"]
    assert s["settings"] == 4 and s["below_observation"] == 2 and "beats_pgd" not in s
    assert s["change_from_observation_db"] == pytest.approx({"a": -0.3, "b": 0.6})
    md = markdown_table(rows)
    assert "Mild damage" in md and "| blind - observed |" in md and "| -0.50 |" in md
    assert "change from the observation per kind (both strengths): a -0.30 dB, b +0.60 dB" in md


@pytest.mark.parametrize("name", list(DAMAGES))
def test_each_kind_damages_more_when_stronger_and_is_seeded(name, faces):
    x = to_tensor(faces)
    mild, strong = damage(name, x, 0), damage(name, x, 1)
    assert mild.shape == strong.shape == faces.shape and mild.dtype == np.uint8
    assert psnr(mild, faces).mean() < 40  # it does damage
    if name != "channel_swap":  # two different swaps, neither milder
        assert psnr(strong, faces).mean() < psnr(mild, faces).mean()
    assert np.array_equal(damage(name, x, 1, seed=3), damage(name, x, 1, seed=3))
    d = DAMAGES[name]
    if d.operator is not None:  # the oracle's operator is differentiable
        xx = x.clone().requires_grad_(True)
        d.operator(xx, 1).sum().backward()
        assert torch.isfinite(xx.grad).all() and xx.grad.abs().sum() > 0


def test_quick_run_writes_rows_for_every_method_and_resumes(tmp_path, tiny_prior_dir):
    kinds = ["colour_cast", "jpeg"]
    r = bench_unseen(tmp_path, prior=str(tiny_prior_dir), data=EXAMPLES, kinds=kinds, device="cpu", quick=True,
                     batch_size=4, log=lambda *a: None)
    rows = {(x["kind"], x["level"], x["method"]) for x in r["results"]}
    for lv in (0, 1):
        assert {("colour_cast", lv, m) for m in ("observed", "pgd", "blind", "oracle")} <= rows
        assert {("jpeg", lv, m) for m in ("observed", "pgd", "blind")} <= rows
        assert ("jpeg", lv, "oracle") not in rows  # no differentiable part
    assert all(np.isfinite(x["psnr_mean"]) for x in r["results"])
    assert "heldout" in r["summary"] and "tune" in r["summary"]
    assert "Held-out kinds" in (tmp_path / "unseen.md").read_text()
    again = bench_unseen(tmp_path, prior=str(tiny_prior_dir), data=EXAMPLES, kinds=kinds, device="cpu", quick=True,
                         batch_size=4, log=lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert len(again["results"]) == len(r["results"])
    assert json.loads((tmp_path / "unseen.json").read_text())["bench"] == "unseen"
