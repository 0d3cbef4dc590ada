"""One folder over several processes with torchrun (``mimic.distributed``): a disjoint share of the groups per rank,
the bytes of a one-process run, one report from every rank's journal."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mimic.cli.main import cli
from mimic.distributed import World, world_from_env
from mimic.inputs import InputError

FAST = ["--warm-steps", "2", "--T", "1", "--T1", "2", "--T2", "2", "--adapt-steps", "2", "--device", "cpu", "--quiet",
        "--batch-size", "2"]


def _folder(path, names, seed=0):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in names:
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path / f"{n}.png")
    return path


def _outputs(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))
            if p.parent.name in ("recovered", "mimicked")}


def _one(*args, tmp_path):
    """One process with one thread, as each torchrun rank has (float results depend on the threads per process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "mimic", *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)


def _torchrun(nproc, *args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "mimic", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


@pytest.mark.parametrize("env,want", [({}, World(0, 1, 0)),
                                      ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, World(3, 4, 1)),
                                      ({"RANK": "1", "WORLD_SIZE": "2"}, World(1, 2, 1))])
def test_world_from_torchrun_variables(env, want):
    assert world_from_env(env) == want


@pytest.mark.parametrize("env", [{"RANK": "2", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "0"}, {"RANK": "x", "WORLD_SIZE": "2"}])
def test_bad_torchrun_variables_are_one_line_errors(env):
    with pytest.raises(InputError, match="RANK|WORLD_SIZE"):
        world_from_env(env)


def test_shards_are_disjoint_and_cover_every_group():
    groups = list(range(7))
    shards = [World(r, 3).shard(groups) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(shards, [])) == groups


@pytest.mark.slow
def test_two_processes_give_the_bytes_of_one_and_a_later_run_of_another_size_finishes_the_folder(tmp_path,
                                                                                                 tiny_prior_dir):
    """torchrun with 2 CPU processes (gloo): every image once in report.json, the recovered and mimicked files those
    of a one-process run; then the folder grows and a one-process run finishes it from both ranks' journals."""
    inp = _folder(tmp_path / "in", [f"a{i}" for i in range(5)])
    one = tmp_path / "one"
    r = _one("recover", inp, "--out", one, "--prior", tiny_prior_dir, *FAST, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]

    two = tmp_path / "two"
    p = _torchrun(2, "recover", inp, "--out", two, "--prior", tiny_prior_dir, *FAST, tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("recovered 5 image(s)") == 1, p.stdout  # rank 0 speaks for the folder
    assert sorted(x.name for x in two.glob("journal*.jsonl")) == ["journal.0.jsonl", "journal.1.jsonl"]
    stems = [im["stem"] for im in json.loads((two / "report.json").read_text())["images"]]
    assert stems == [f"a{i}" for i in range(5)]
    assert _outputs(two) == _outputs(one) and len(_outputs(one)) == 10
    assert not (two / ".lock").exists()

    _folder(inp, ["b0", "b1"], seed=1)  # the folder grows; its first groups stay as they were
    r = _one("recover", inp, "--out", two, "--prior", tiny_prior_dir, *FAST, tmp_path=tmp_path)
    assert r.returncode == 0 and "resuming: 5 image(s)" in r.stderr, r.stderr[-2000:]
    stems = [im["stem"] for im in json.loads((two / "report.json").read_text())["images"]]
    assert stems == [f"a{i}" for i in range(5)] + ["b0", "b1"]
    r = _one("recover", inp, "--out", one, "--prior", tiny_prior_dir, *FAST, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _outputs(two) == _outputs(one)


@pytest.mark.slow
def test_two_processes_refuse_an_out_made_with_other_settings_on_every_rank(tmp_path, tiny_prior_dir):
    inp = _folder(tmp_path / "in", ["a0", "a1"])
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["recover", str(inp), "--out", str(out), "--prior", str(tiny_prior_dir), *FAST])
    assert r.exit_code == 0, r.output
    p = _torchrun(2, "recover", inp, "--out", out, "--prior", tiny_prior_dir, *FAST, "--seed", "1",
                  tmp_path=tmp_path)
    assert p.returncode != 0
    assert p.stderr.count("made with other settings (seed 0 -> 1)") == 2, p.stderr[-3000:]  # one line per rank


def _rank_pids(parent: int) -> dict:
    """rank -> pid of torchrun's workers (children of its agent), read from /proc."""
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{d}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        except (OSError, ValueError, IndexError):
            continue
        if b"RANK" in env:
            found[int(env[b"RANK"])] = int(d)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the ranks' processes in /proc")
def test_one_rank_killed_mid_run_then_one_process_finishes_it_identically(tmp_path, tiny_prior_dir):
    import signal
    import time

    inp = _folder(tmp_path / "in", [f"a{i:02d}" for i in range(8)])  # 4 groups, 2 per rank
    slow = [*FAST, "--warm-steps", "20"]
    one = tmp_path / "one"
    r = _one("recover", inp, "--out", one, "--prior", tiny_prior_dir, *slow, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          "-m", "mimic", "recover", str(inp), "--out", str(out), "--prior", str(tiny_prior_dir),
                          *slow], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.1.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (journal.exists() and journal.read_text().count("\n") >= 1):
        time.sleep(0.05)
    ranks = _rank_pids(p.pid)
    assert 1 in ranks, ranks
    os.kill(ranks[1], signal.SIGKILL)  # rank 1 dies after its first group; torchrun stops rank 0
    assert p.wait(timeout=300) != 0
    assert not (out / "report.json").exists()  # the run did not finish

    r = _one("recover", inp, "--out", out, "--prior", tiny_prior_dir, *slow, tmp_path=tmp_path)
    assert r.returncode == 0 and "resuming:" in r.stderr, r.stderr[-2000:]
    stems = [im["stem"] for im in json.loads((out / "report.json").read_text())["images"]]
    assert stems == [f"a{i:02d}" for i in range(8)]
    assert _outputs(out) == _outputs(one)


@pytest.mark.slow
def test_bench_scale_measures_both_launches_and_memory(tmp_path, tiny_prior_dir):
    """`mimic bench scale` end to end on tiny folders: both launches recover the same bytes, every image of the
    memory runs is reported, and the table names each row."""
    sched = "--warm-steps 2 --T 1 --T1 2 --T2 2 --adapt-steps 2 --batch-size 2"
    r = CliRunner().invoke(cli, ["bench", "scale", "--out", str(tmp_path / "b"), "--n", "4", "--procs", "2",
                                 "--prior", str(tiny_prior_dir), "--schedule", sched, "--memory-sizes", "4,8"])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "b" / "scale.json").read_text())["results"]
    thr = [x for x in rows if x["measure"] == "throughput"]
    mem = [x for x in rows if x["measure"] == "memory"]
    assert [x["launch"] for x in thr] == ["1 process x 2 threads", "2 processes x 1 thread"]
    # same bytes is reported, not promised: 1 process x 2 threads rounds floats unlike 2 x 1 (the runs above compare
    # equal threads per process)
    assert isinstance(thr[1]["same_bytes"], bool) and thr[1]["ratio_to_one_process"] > 0
    assert [(x["images"], x["reported"]) for x in mem] == [(4, 4), (8, 8)] and all(x["peak_rss_mb"] > 50 for x in mem)
    assert "2 processes x 1 thread" in r.output and "bytes" in r.output
