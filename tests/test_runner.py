"""Folder runs: nothing lost, nothing overwritten, every image reported once, resumed runs identical."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mimic.cli.main import cli

FAST = ["--warm-steps", "2", "--T", "1", "--T1", "2", "--T2", "2", "--adapt-steps", "2", "--device", "cpu", "--quiet"]


def _folder(path, n=3, seed=0):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path / f"img{i:02d}.png")
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _outputs(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "recovered").rglob("*.png"))}


def _stems(out):
    return [r["stem"] for r in json.loads((out / "report.json").read_text())["images"]]


def test_kill_9_then_rerun_reports_every_image_once_with_the_uninterrupted_bytes(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in", n=8)
    args = ["--prior", tiny_prior_dir, "--batch-size", "2", "--warm-steps", "20", "--T", "1", "--T1", "3",
            "--T2", "10", "--adapt-steps", "5", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # every run with the same threads: the same float sums

    def cmd(out):
        return [sys.executable, "-m", "mimic", "recover", str(inp), "--out", str(out), *map(str, args)]

    ref = tmp_path / "ref"
    assert subprocess.run(cmd(ref), env=env, capture_output=True).returncode == 0
    out = tmp_path / "out"
    p = subprocess.Popen(cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.jsonl"
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    assert p.poll() is None, "the run ended before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(_outputs(out)) < 8
    assert (out / ".lock").exists()  # left behind by the killed run: stale, taken over
    r = subprocess.run(cmd(out), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    assert _stems(out) == [f"img{i:02d}" for i in range(8)]  # every image once, in order
    assert _outputs(out) == _outputs(ref)  # the same bytes as the uninterrupted run
    assert not (out / ".lock").exists()


def test_other_settings_into_the_same_out_are_refused(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in")
    out = tmp_path / "out"
    assert run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST).exit_code == 0
    before = _outputs(out)
    for extra in (["--method", "pgd"], ["--seed", "3"], ["--task", "gray_blur"], ["--lr-g", "0.5"]):
        r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST, *extra)
        assert r.exit_code == 2 and "made with other settings" in r.output, (extra, r.output)
        assert len(r.output.strip().splitlines()) == 1
    assert _outputs(out) == before
    r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST, "--seed", "3", "--overwrite")
    assert r.exit_code == 0 and json.loads((out / "report.json").read_text())["settings"]["seed"] == 3


def test_a_second_run_into_a_locked_out_is_refused_and_a_stale_lock_taken_over(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))  # alive: this process
    r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST)
    assert r.exit_code == 2 and "in use by another run" in r.output
    assert not (out / "recovered").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST)
    assert r.exit_code == 0, r.output
    assert not (out / ".lock").exists()


def test_bad_paths_fail_before_any_compute(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in")
    r = run("recover", inp, "--out", tmp_path / "o", "--prior", tiny_prior_dir, "--clean", tmp_path / "typo", *FAST)
    assert r.exit_code == 2 and "typo" in r.output and not (tmp_path / "o" / "recovered").exists()
    (tmp_path / "afile").write_text("x")
    r = run("recover", inp, "--out", tmp_path / "afile", "--prior", tiny_prior_dir, *FAST)
    assert r.exit_code == 2 and "not writable" in r.output and "Traceback" not in r.output
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores the mode
            pytest.skip("running as root: a read-only folder is writable")
        r = run("recover", inp, "--out", ro / "o", "--prior", tiny_prior_dir, *FAST)
        assert r.exit_code == 2 and "not writable" in r.output
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("opt,value", [("--batch-size", "0"), ("--batch-size", "-1"), ("--T", "-1"),
                                       ("--warm-steps", "-100"), ("--lr-g", "nan"), ("--lr-s", "0"),
                                       ("--restarts", "0"), ("--keep-tv", "-1"), ("--seed", "-1")])
def test_bad_numeric_options_exit_2_naming_the_option(tmp_path, tiny_prior_dir, opt, value):
    inp = _folder(tmp_path / "in", n=1)
    r = run("recover", inp, "--out", tmp_path / "o", "--prior", tiny_prior_dir, *FAST, opt, value)
    assert r.exit_code == 2 and opt in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_garbage_output_is_redone_and_damaged_journal_lines_ignored(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in")
    out = tmp_path / "out"
    assert run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST).exit_code == 0
    (out / "recovered" / "img01.png").write_bytes(b"garbage")
    with open(out / "journal.jsonl", "a") as f:
        f.write('{"images": [{"stem": "img0')  # a torn line
    r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST)
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(out / "recovered" / "img01.png")).shape == (64, 64, 3)  # redone
    assert "resuming: 2 image(s)" in r.output
    assert _stems(out) == ["img00", "img01", "img02"]


def test_pgd_writes_no_mimicked_folder_and_grids_are_labelled(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in", n=3)
    r = run("compare", inp, "--out", tmp_path / "cmp", "--prior", tiny_prior_dir, "--clean", inp, *FAST)
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "cmp" / "pgd" / "mimicked").exists()
    assert (tmp_path / "cmp" / "mimic" / "mimicked" / "img00.png").exists()
    grid = np.asarray(Image.open(tmp_path / "cmp" / "grid.png"))
    # five labelled rows (observed, f(x), MimicGAN, PGD, clean) of three 64-pixel images with captions
    assert grid.shape[0] == 5 * (64 + 12 + 2) + 2
    assert grid.shape[1] == 90 + 3 * (64 + 2) + 2
    assert (grid[:, :90] < 128).any()  # the labels are drawn


def test_json_summary_on_stdout(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in", n=2)
    r = CliRunner().invoke(cli, ["recover", str(inp), "--out", str(tmp_path / "o"), "--prior",
                                                 str(tiny_prior_dir), "--json", *FAST])
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["recovered"] == 2 and d["skipped"] == []


def test_dangling_links_and_unreadable_subfolders_are_named_once(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in", n=2)
    (inp / "gone.png").symlink_to(tmp_path / "nowhere.png")
    locked = inp / "locked"
    locked.mkdir()
    _folder(locked, n=1)
    locked.chmod(0)
    try:
        r = run("recover", inp, "--out", tmp_path / "o", "--prior", tiny_prior_dir, *FAST)
        assert "link(s) to missing files" in r.output and "gone.png" in r.output
        if not os.access(locked, os.R_OK):  # root reads anything
            assert "unreadable subfolder" in r.output
    finally:
        locked.chmod(0o700)


def test_out_of_prior_flag_for_every_image_warnings_and_counts(tmp_path, tiny_prior_dir, monkeypatch):
    """A MimicGAN run with a prior whose face-score threshold is known (mimic.ood) records face_score and out_of_prior
    for every image; a flat image (no edges: score 0) is flagged, warned about on stderr by name and counted in the
    summaries. PGD and priors with no measured threshold record nothing."""
    import shutil
    from pathlib import Path

    from mimic import ood

    inp = tmp_path / "in"
    inp.mkdir()
    for p in sorted((Path(__file__).resolve().parent.parent / "examples" / "clean").glob("*.png"))[:3]:
        shutil.copy(p, inp / p.name)
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(inp / "flat.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(inp / "noise.png")
    r = run("recover", inp, "--out", tmp_path / "plain", "--prior", tiny_prior_dir, *FAST)  # no threshold measured
    assert r.exit_code == 0 and "warning" not in r.output
    rep = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert rep["out_of_prior"] is None and not any("face_score" in x for x in rep["images"])

    monkeypatch.setitem(ood.THRESHOLDS, tiny_prior_dir.name, ood.THRESHOLD)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["recover", str(inp), "--out", str(out), "--prior", str(tiny_prior_dir), "--json", *FAST])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["images"]) == 5
    assert all(isinstance(x["out_of_prior"], bool) and 0 <= x["face_score"] <= 1 for x in rep["images"])
    flat = next(x for x in rep["images"] if x["stem"] == "flat")
    assert flat["out_of_prior"] and flat["face_score"] == 0
    flagged = [x["stem"] for x in rep["images"] if x["out_of_prior"]]
    assert rep["out_of_prior"] == {"threshold": ood.THRESHOLD, "n": len(flagged), "images": flagged}
    assert json.loads(r.stdout)["out_of_prior"] == rep["out_of_prior"]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(flagged)
    assert any("flat.png: the prior may have made up a face (face score 0.000 < 0.319)" in w for w in warnings)
    r = run("recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST)  # resumed: the flags come from the journal
    assert r.exit_code == 0 and "resuming: 5 image(s)" in r.output
    assert f"{len(flagged)} image(s) may be outside the prior (warnings above)" in r.stdout
    r = run("recover", inp, "--out", tmp_path / "pgd", "--method", "pgd", "--prior", tiny_prior_dir, *FAST)
    rep = json.loads((tmp_path / "pgd" / "report.json").read_text())
    assert r.exit_code == 0 and "warning" not in r.output and rep["out_of_prior"] is None
    assert not any("face_score" in x for x in rep["images"])


def test_compare_pgd_is_plain_inversion_unless_adaptation_is_asked_for(tmp_path, tiny_prior_dir):
    """compare's PGD column does not take the blind preset's generator adaptation (MimicGAN does); --adapt-steps
    sets both."""
    from mimic.runner import compare_folder

    inp = _folder(tmp_path / "in", n=2)
    kw = dict(prior=str(tiny_prior_dir), device="cpu", progress=False, warm_steps=2, T=1, T1=2, T2=2)
    compare_folder(inp, tmp_path / "a", task="blind", **kw)
    sched = {m: json.loads((tmp_path / "a" / m / "settings.json").read_text())["schedule"] for m in ("mimic", "pgd")}
    assert sched["pgd"]["adapt_steps"] == 0 and sched["mimic"]["adapt_steps"] == 150
    compare_folder(inp, tmp_path / "b", task="blind", adapt_steps=3, **kw)
    assert json.loads((tmp_path / "b" / "pgd" / "settings.json").read_text())["schedule"]["adapt_steps"] == 3
