"""Recompute the intervals of the committed benchmark results with today's conventions (no recovery is re-run).

    python -m tools.restat

Every interval field of the result JSONs below is recomputed, in place, from the per-image values the JSON already
stores: a mean's 95% interval is Student's t with n - 1 degrees of freedom (``mimic.metrics.mean_ci95``; paired per
image for a gain over PGD), an accuracy's is the Wilson interval [lo, hi] in percent
(``mimic.bench.classify.accuracy_ci95``). Means, accuracies and every other field are kept as stored; a mean that
its per-image values do not reproduce leaves its interval as stored. Each bench's markdown file is then rewritten
from the updated JSON with that bench's own table functions, as the bench writes it. JSON is saved with the benches'
writer (``mimic.io.save_json``) and only when something changed, so a second run changes nothing.

- blind/blind.json, blind_adapt/blind.json: rows' PSNR and SSIM intervals from ``per_image[task][method]``, the gain
  over PGD paired with PGD's per-image PSNR of the same task; blind.md (summary table and every row)
- unseen/unseen.json: rows' PSNR interval from their ``per_image`` PSNR, the gain over PGD paired with the PGD row
  of the same kind and strength (the rows store no per-image SSIM: their SSIM intervals stay as stored); the
  ``summary`` entries hold no interval (counts and means); unseen.md
- reconstruct/reconstruct.json: MSE, PSNR and SSIM intervals from ``per_image[corruption][method]``; reconstruct.md
- shifted/shifted.json: PSNR interval from each row's ``psnr`` list, the gain paired with the PGD row of the same
  setting; shifted.md
- classify/classify.json, defense/defense.json: the Wilson interval from the per-image predictions against
  ``per_image["labels"]``, else from the accuracy and n; classify.md, defense.md

benchmarks/results/prior_celeba64.json and pretrained/*/card.json store no per-image values and are not touched.
A row without the per-image values an interval needs keeps that interval, with a line printed saying so.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mimic.io import save_json, save_text
from mimic.metrics import mean_ci95, proportion_ci95

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FILES = ("blind/blind.json", "blind_adapt/blind.json", "unseen/unseen.json", "reconstruct/reconstruct.json",
         "shifted/shifted.json", "classify/classify.json", "defense/defense.json")


def bench_of(d: dict) -> str:
    """Which bench wrote the result ``d`` (shifted.json has no "bench" field; its rows have a "setting")."""
    if "bench" in d:
        return d["bench"]
    if "meta" in d and all("setting" in r for r in d.get("results", [])):
        return "shifted"
    raise ValueError("not a result JSON of a bench this tool knows")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


class _Restat:
    """Recomputes intervals of one result dict in place; ``notes``: what was left as stored; ``changes``:
    (row label, field, old, new) of every interval recomputed."""

    def __init__(self, name: str):
        self.name, self.notes, self.changes = name, [], []

    def note(self, text: str) -> None:
        self.notes.append(f"{self.name}: {text}")

    def mean(self, row: dict, label: str, mean_key: str, ci_key: str, values) -> None:
        """``row[ci_key]`` = Student's t half-width of ``values``, if their mean is ``row[mean_key]``."""
        if ci_key not in row:
            return
        if values is None:
            self.note(f"{label}: no per-image values for {ci_key}, left as stored")
            return
        v = np.asarray(values, dtype=np.float64)
        m, h = mean_ci95(v)
        if len(v) != row.get("n", len(v)) or not _close(m, row[mean_key]):
            self.note(f"{label}: the per-image values do not give the stored {mean_key} ({m!r} vs "
                      f"{row[mean_key]!r}, {len(v)} values), {ci_key} left as stored")
            return
        self.changes.append((label, ci_key, row[ci_key], h))
        row[ci_key] = h

    def gain(self, row: dict, label: str, values, base) -> None:
        """Paired gain over PGD: ``gain_ci95`` from ``values - base`` per image."""
        if "gain_ci95" not in row:
            return
        if values is None or base is None:
            self.note(f"{label}: no per-image PSNR of it and of PGD, gain_ci95 left as stored")
            return
        a, b = np.asarray(values, dtype=np.float64), np.asarray(base, dtype=np.float64)
        if a.shape != b.shape:
            self.note(f"{label}: {len(a)} per-image values against PGD's {len(b)}, gain_ci95 left as stored")
            return
        self.mean(row, label, "gain_over_pgd_db", "gain_ci95", a - b)

    def accuracy(self, row: dict, label: str, pred, labels) -> None:
        """Wilson interval [lo, hi] (percent) from predictions against labels, else from the accuracy and n."""
        n = int(row["n"])
        k = None
        if pred is not None and labels is not None and len(pred) == n and len(labels) >= n:
            kk = int(np.sum(np.asarray(pred) == np.asarray(labels[:n])))
            if _close(100 * kk / n, row["accuracy"]):
                k = kk
            else:
                self.note(f"{label}: the per-image predictions give {100 * kk / n:.2f}% against the stored "
                          f"{row['accuracy']!r}; interval from the accuracy and n")
        elif pred is None:
            self.note(f"{label}: no per-image predictions; interval from the accuracy and n")
        else:
            self.note(f"{label}: per-image predictions of another length than n = {n}; interval from the "
                      "accuracy and n")
        if k is None:
            k = int(round(row["accuracy"] * n / 100))
        _, lo, hi = proportion_ci95(k, n)
        ci = [100 * lo, 100 * hi]
        self.changes.append((label, "accuracy_ci95", row["accuracy_ci95"], ci))
        row["accuracy_ci95"] = ci


def _restat_blind(d: dict, r: _Restat) -> None:
    pi = d.get("per_image") or {}
    for row in d["results"]:
        t, m = row["task"], row["method"]
        label = f"{t}/{m}"
        mine = pi.get(t, {}).get(m)
        mine = mine if isinstance(mine, dict) else {}
        r.mean(row, label, "psnr_mean", "psnr_ci95", mine.get("psnr"))
        r.mean(row, label, "ssim_mean", "ssim_ci95", mine.get("ssim"))
        pgd = pi.get(t, {}).get("pgd")
        r.gain(row, label, mine.get("psnr"), pgd.get("psnr") if isinstance(pgd, dict) else None)


def _restat_unseen(d: dict, r: _Restat) -> None:
    from mimic.bench.unseen import summary

    rows = d["results"]
    pgd = {(q["kind"], q["level"]): q.get("per_image") for q in rows if q["method"] == "pgd"}
    no_ssim = current = 0
    for row in rows:
        label = f"{row['kind']}/{row['level']}/{row['method']}"
        before = row.get("psnr_ci95")
        r.mean(row, label, "psnr_mean", "psnr_ci95", row.get("per_image"))
        if "ssim_ci95" in row:  # the rows store per-image PSNR only
            no_ssim += 1
            current += before is not None and _close(row["psnr_ci95"], before)
        r.gain(row, label, row.get("per_image"), pgd.get((row["kind"], row["level"])))
    if no_ssim:
        r.note(f"{no_ssim} rows store no per-image SSIM, their ssim_ci95 left as stored ({current} of them had "
               "psnr_ci95 already equal to Student's t: measured with today's mean_ci95)")
    # the summaries hold counts and means, no interval: they must be what the bench computes from the rows
    for key, method in (("summary", "blind"), ("summary_blind_adapt", "blind_adapt")):
        if key in d and d[key] != summary(rows, method):
            r.note(f"{key} differs from mimic.bench.unseen.summary of the rows; left as stored")


def _restat_reconstruct(d: dict, r: _Restat) -> None:
    pi = d.get("per_image") or {}
    for row in d["results"]:
        c, m = row["corruption"], row["method"]
        mine = pi.get(c, {}).get(m) or {}
        for k in ("mse", "psnr", "ssim"):
            r.mean(row, f"{c}/{m}", f"{k}_mean", f"{k}_ci95", mine.get(k))


def _restat_shifted(d: dict, r: _Restat) -> None:
    rows = d["results"]
    pgd = {q["setting"]: q.get("psnr") for q in rows if q["method"] == "pgd"}
    for row in rows:
        label = f"{row['setting']}/{row['method']}"
        r.mean(row, label, "psnr_mean", "psnr_ci95", row.get("psnr"))
        r.gain(row, label, row.get("psnr"), pgd.get(row["setting"]))


def _restat_accuracy(d: dict, r: _Restat, key: str) -> None:
    pi = d.get("per_image") or {}
    labels = pi.get("labels")
    for row in d["results"]:
        group = pi.get(row[key])
        pred = group.get(row["method"]) if isinstance(group, dict) else None
        r.accuracy(row, f"{row[key]}/{row['method']}", pred, labels)


def restat(d: dict, name: str = "result") -> _Restat:
    """Recompute every interval of the result dict ``d`` in place; returns what was done (``.changes``) and what
    was left as stored (``.notes``)."""
    r = _Restat(name)
    bench = bench_of(d)
    if bench == "blind":
        _restat_blind(d, r)
    elif bench == "unseen":
        _restat_unseen(d, r)
    elif bench == "reconstruct":
        _restat_reconstruct(d, r)
    elif bench == "shifted":
        _restat_shifted(d, r)
    elif bench == "classify":
        _restat_accuracy(d, r, "corruption")
    elif bench == "defense":
        _restat_accuracy(d, r, "attack")
    else:
        raise ValueError(f"no intervals to recompute in a {bench!r} result")
    return r


def markdown(d: dict) -> str:
    """The markdown file the bench writes beside its JSON, from the result dict ``d``."""
    bench = bench_of(d)
    rows = d["results"]
    if bench == "blind":
        from mimic.bench.blind import markdown_table, summary_table

        return ("Mean PSNR (dB) per task and method:\n\n" + summary_table(rows) +
                "\nEvery row with its 95% interval and SSIM:\n\n" + markdown_table(rows))
    if bench == "shifted":
        from mimic.bench.shifted import markdown_table

        return markdown_table(rows) + "\n"
    if bench in ("unseen", "reconstruct", "classify", "defense"):
        import importlib

        return importlib.import_module(f"mimic.bench.{bench}").markdown_table(rows)
    raise ValueError(f"no markdown for a {bench!r} result")


def _dump(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=False)


def restat_file(path, *, write_md: bool = True) -> _Restat:
    """Recompute the intervals of the result JSON at ``path`` in place and rewrite the bench's markdown beside it
    (same name, ``.md``); a file is written only if its content changes. Returns :func:`restat`'s record with
    ``json_changed`` and ``md_changed`` set."""
    path = Path(path)
    d = json.loads(path.read_text())
    before = _dump(d)
    r = restat(d, path.relative_to(RESULTS).as_posix() if path.is_relative_to(RESULTS) else path.name)
    r.json_changed = _dump(d) != before
    if r.json_changed:
        save_json(path, d)
    r.md_changed = False
    if write_md:
        md, text = path.with_suffix(".md"), markdown(d)
        if not md.exists() or md.read_text() != text:
            save_text(md, text)
            r.md_changed = True
    return r


def _relative(old, new) -> float | None:
    """Relative change of an interval's width (a half-width, or a pair [lo, hi] against a half-width or pair)."""
    width = lambda c: (c[1] - c[0]) if isinstance(c, (list, tuple)) else 2 * c  # noqa: E731
    w0, w1 = width(old), width(new)
    return None if not w0 or w0 != w0 else w1 / w0 - 1


def main():
    for rel in FILES:
        path = RESULTS / rel
        if not path.exists():
            print(f"{rel}: missing, skipped")
            continue
        r = restat_file(path)
        for line in r.notes:
            print(line)
        moved = [(lab, f, o, n) for lab, f, o, n in r.changes if o != n]
        rc = [(lab, f, _relative(o, n)) for lab, f, o, n in moved if _relative(o, n) is not None]
        big = max(rc, key=lambda c: abs(c[2]), default=None)
        print(f"{rel}: {len(r.changes)} intervals recomputed, {len(moved)} changed"
              + (f" (largest change of width {100 * big[2]:+.2f}%: {big[0]} {big[1]})" if big else "")
              + f"; json {'rewritten' if r.json_changed else 'unchanged'}, "
              f"{path.with_suffix('.md').name} {'rewritten' if r.md_changed else 'unchanged'}")


if __name__ == "__main__":
    main()
