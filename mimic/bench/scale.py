"""`mimic bench scale`: one folder over several processes (torchrun), and memory against the folder's size.

Two measurements, each by running the real command line in a subprocess on a folder this bench writes (the demo
faces in ``examples/clean``, or ``--data``, repeated under distinct names):

- throughput: ``mimic recover`` as one process with P threads against ``torchrun --nproc-per-node P`` with one
  thread per process, on the same cores (images per second end to end, process start and prior loading included);
  the ratio is what sharding the groups over processes costs or gains;
- memory: the peak resident set size of one ``mimic recover`` process on folders of increasing size with a
  minimal schedule (the solve's memory does not grow with the folder; what could is the file list, the journal and
  the report): flat memory means the largest folder's peak is within a small factor of the smallest's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..io import read_image, save_json, save_png

__all__ = ["bench_scale", "markdown_table"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clean"

_RSS = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # kB on Linux


def _faces(data: Path | None) -> list:
    src = Path(data) if data is not None else EXAMPLES
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        from ..inputs import InputError

        raise InputError(f"{src}: no images to build the bench's folders from")
    return [read_image(p) for p in files[:64]]


def _folder(path: Path, faces: list, n: int) -> Path:
    """``n`` images named img00000.png ... (the faces repeated), written once and reused."""
    path.mkdir(parents=True, exist_ok=True)
    have = {p.name for p in path.glob("img*.png")}
    for i in range(n):
        name = f"img{i:05d}.png"
        if name not in have:
            save_png(path / name, faces[i % len(faces)])
    return path


def _env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONPATH": os.pathsep.join(sys.path)}


def _recover_args(inp: Path, out: Path, task: str, device: str, schedule: list) -> list:
    return ["recover", str(inp), "--out", str(out), "--task", task, "--device", device, "--quiet", "--json",
            *schedule]


def _timed(cmd: list, env: dict) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed: {p.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t


def bench_scale(out, *, n: int = 100, procs: int = 2, task: str = "blind", device: str = "cpu",
                schedule: tuple = ("--T", "2"), memory_sizes: tuple = (1000, 20000),
                memory_schedule: tuple = ("--warm-steps", "0", "--T", "0", "--adapt-steps", "0"),
                data=None, log=print) -> dict:
    """Run both measurements (module docstring); writes ``OUT/scale.json`` and ``OUT/scale.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    faces = _faces(data)
    rows = []
    exe = [sys.executable, "-m", "mimic"]
    if n:
        inp = _folder(out / "folders" / f"n{n}", faces, n)
        for label, cmd, env in (
                (f"1 process x {procs} threads", exe + _recover_args(inp, out / "runs" / "one", task, device,
                                                                      list(schedule)), _env(procs)),
                (f"{procs} processes x 1 thread", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   f"--nproc-per-node={procs}", "-m", "mimic",
                                                   *_recover_args(inp, out / "runs" / "many", task, device,
                                                                  list(schedule))], _env(1))):
            run_dir = out / "runs" / ("one" if label.startswith("1 ") else "many")
            shutil.rmtree(run_dir, ignore_errors=True)
            secs = _timed(cmd, env)
            rows.append({"measure": "throughput", "launch": label, "images": n, "seconds": secs,
                         "images_per_sec": n / secs, "schedule": " ".join(schedule), "task": task,
                         "device": device})
            log(f"{label:28s} {n} images in {secs:.1f} s: {n / secs:.2f} images/s")
        one, many = rows[-2]["images_per_sec"], rows[-1]["images_per_sec"]
        rows[-1]["ratio_to_one_process"] = many / one
        files = {run: {p.name: p.read_bytes() for p in (out / "runs" / run / "recovered").glob("*.png")}
                 for run in ("one", "many")}
        same = len(files["one"]) == n and files["one"] == files["many"]
        rows[-1]["same_bytes"] = same
    for size in memory_sizes:
        inp = _folder(out / "folders" / f"n{size}", faces, size)
        run_dir = out / "runs" / f"mem{size}"
        shutil.rmtree(run_dir, ignore_errors=True)
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _RSS, *exe,
                            *_recover_args(inp, run_dir, task, device, list(memory_schedule))],
                           env=_env(procs), capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"memory run on {size} images failed: {p.stderr.strip().splitlines()[-1:]}")
        rss_mb = int(p.stdout.strip().splitlines()[-1]) / 1024
        report = json.loads((run_dir / "report.json").read_text())
        rows.append({"measure": "memory", "images": size, "peak_rss_mb": rss_mb, "reported": len(report["images"]),
                     "seconds": time.perf_counter() - t, "schedule": " ".join(memory_schedule), "task": task,
                     "device": device})
        log(f"memory: {size} images, peak RSS {rss_mb:.0f} MB, {len(report['images'])} reported")
        shutil.rmtree(run_dir, ignore_errors=True)  # the outputs are not needed; the input folder is kept for reuse
    mem = [r for r in rows if r["measure"] == "memory"]
    if len(mem) > 1:
        mem[-1]["rss_ratio_to_smallest"] = mem[-1]["peak_rss_mb"] / mem[0]["peak_rss_mb"]
    import torch

    from .. import __version__

    result = {"bench": "scale", "results": rows,
              "settings": {"n": n, "procs": procs, "task": task, "device": device, "faces": str(data or "examples/clean"),
                           "cpu_count": os.cpu_count()},
              "versions": {"mimic": __version__, "torch": torch.__version__}}
    save_json(out / "scale.json", result)
    (out / "scale.md").write_text(markdown_table(rows))
    return result


def markdown_table(rows: list) -> str:
    lines = ["| measure | launch | images | schedule | seconds | images / s | ratio | peak RSS (MB) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["measure"] == "throughput":
            ratio = f"{r['ratio_to_one_process']:.2f}x" if "ratio_to_one_process" in r else "-"
            if "same_bytes" in r:
                ratio += " (same bytes)" if r["same_bytes"] else " (bytes differ)"
            lines.append(f"| throughput | {r['launch']} | {r['images']} | {r['schedule']} | {r['seconds']:.1f} | "
                         f"{r['images_per_sec']:.2f} | {ratio} | - |")
        else:
            ratio = f"{r['rss_ratio_to_smallest']:.2f}x" if "rss_ratio_to_smallest" in r else "-"
            lines.append(f"| memory | 1 process | {r['images']} | {r['schedule']} | {r['seconds']:.1f} | - | {ratio} | "
                         f"{r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"
