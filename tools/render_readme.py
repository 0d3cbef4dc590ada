"""Fill the generated sections of README.md from committed results (no number typed by hand).

    python -m tools.render_readme

Sections are delimited by <!-- BEGIN:name --> ... <!-- END:name -->:
- prior: pretrained/celeba64/card.json (quality figures from `mimic prior-report celeba64`)
- blind: benchmarks/results/blind/blind.md (from `mimic bench blind`)
- speed: benchmarks/results/speed/speed.json (from `mimic bench speed`)
- fmnist: pretrained/fmnist28/card.json and pretrained/fmnist_classifier/card.json
- classify, defense, reconstruct: benchmarks/results/<bench>/<bench>.md (+ json)
- shifted: benchmarks/results/shifted/shifted.md (+ json; from `mimic bench shifted`)
- shifted_now: benchmarks/results/shifted_now/shifted.json (`mimic bench shifted --n 25 --methods blind`, the blind
  preset as it is now) against the same faces' rows of benchmarks/results/shifted/shifted.json
- unseen: benchmarks/results/unseen/unseen.md (+ json; from `mimic bench unseen`)
- mild: benchmarks/results/mild/unseen.md (+ json; from `mimic bench unseen --half mild`)
- scale: benchmarks/results/scale/scale.md (from `mimic bench scale`)
- adapt: benchmarks/results/blind_adapt/blind.json (`mimic bench blind --n 25` with the adapting methods) against
  the same faces' rows in benchmarks/results/blind/blind.json
"""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prior_section() -> str:
    card = json.loads((ROOT / "pretrained" / "celeba64" / "card.json").read_text())
    q, tr = card.get("quality", {}), card.get("training", {})
    rows = [
        ("training", f"{tr.get('epochs')} epochs ({tr.get('steps')} steps), seed {tr.get('seed')}, "
                     f"{tr.get('train_seconds', 0) / 3600:.1f} h on {tr.get('hardware')}, {tr.get('generator_weights')} generator weights"),
        ("held-out images", q.get("heldout_source")),
        ("projection PSNR (ceiling of every recovery)", f"{q['projection_psnr_mean']:.2f} ± {q['projection_psnr_ci95']:.2f} dB (n = {q['n_images']})"),
        ("projection SSIM", f"{q['projection_ssim_mean']:.3f} ± {q['projection_ssim_ci95']:.3f}"),
        ("D logit, real vs generated", f"{q['d_logit_real_mean']:.2f} vs {q['d_logit_fake_mean']:.2f} (ROC AUC {q['d_auc']:.3f})"),
    ]
    out = ["| celeba64 | |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows]
    out += ["", "Samples (`pretrained/celeba64/samples.png`) and projections of held-out faces (top: original, "
                "bottom: PGD projection, `pretrained/celeba64/projection.png`):", "",
            "![samples](pretrained/celeba64/samples.png)", "", "![projection](pretrained/celeba64/projection.png)"]
    return "\n".join(out)


def blind_section() -> str:
    p = ROOT / "benchmarks" / "results" / "blind"
    res = json.loads((p / "blind.json").read_text())
    st = res["settings"]
    by_dev: dict = {}  # device -> rows measured there
    for r in res["results"]:
        by_dev.setdefault(r["device"], []).append(r)
    where = "; ".join(f"{len(rs)} rows on {d}, {sum(r['seconds'] for r in rs) / 60:.0f} min of compute summed"
                      for d, rs in sorted(by_dev.items()))
    head = (f"{st['n']} held-out test faces per task ({st['faces']}), prior sha256 "
            f"{st['prior_sha256'].get('generator.safetensors', '')[:12]}…, overrides {st['overrides'] or 'none'}; "
            f"{where} (a resumed run reuses rows measured earlier).")
    figs = ["", "Figure 2 layout (rows: observed, the surrogate's estimate f(x), PGD, MimicGAN, clean; PSNR under "
                "each image), first 8 faces per task:", ""]
    for t in dict.fromkeys(r["task"] for r in res["results"]):
        if (p / f"fig2_{t}.png").exists():
            figs += [f"`{t}`", "", f"![{t}](benchmarks/results/blind/fig2_{t}.png)", ""]
    if (p / "fig_traces.png").exists():
        figs += ["PSNR against outer iteration and surrogate loss against PSNR (first group of each task):", "",
                 "![traces](benchmarks/results/blind/fig_traces.png)"]
    return head + "\n\n" + (p / "blind.md").read_text() + "\n".join(figs)


def speed_section() -> str:
    res = json.loads((ROOT / "benchmarks" / "results" / "speed" / "speed.json").read_text())
    out = ["| device | groups x 25 | s / warm step | s / outer iteration | s for the default schedule | images / s | speed-up vs a loop over groups |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["results"]:
        out.append(f"| {r['device']} | {r['groups']} | {r['sec_per_warm_step']:.3f} | {r['sec_per_outer_iteration']:.2f} | "
                   f"{r['sec_default_schedule']:.1f} | {r['images_per_sec']:.2f} | "
                   + (f"{r['speedup_vs_loop']:.2f}x |" if "speedup_vs_loop" in r else "- |"))
    return "\n".join(out)


def fmnist_section() -> str:
    g = json.loads((ROOT / "pretrained" / "fmnist28" / "card.json").read_text())
    c = json.loads((ROOT / "pretrained" / "fmnist_classifier" / "card.json").read_text())
    q, tr = g.get("quality", {}), g.get("training", {})
    rows = [
        ("fmnist28 training", f"{tr.get('epochs')} epochs ({tr.get('steps')} steps), seed {tr.get('seed')}, "
                              f"{tr.get('train_seconds', 0) / 60:.0f} min on {tr.get('hardware')}, {tr.get('generator_weights')} generator weights"),
        ("held-out images", q.get("heldout_source")),
        ("projection PSNR", f"{q['projection_psnr_mean']:.2f} ± {q['projection_psnr_ci95']:.2f} dB (n = {q['n_images']}; PGD, {q.get('projection_latent_steps')} steps, best of {q.get('projection_restarts', 1)} starts)"),
        ("projection SSIM", f"{q['projection_ssim_mean']:.3f} ± {q['projection_ssim_ci95']:.3f}"),
        ("D logit, real vs generated", f"{q['d_logit_real_mean']:.2f} vs {q['d_logit_fake_mean']:.2f} (ROC AUC {q['d_auc']:.3f})"),
        ("classifier accuracy: clean / PGD projection",
         f"{q.get('classifier_accuracy_clean', float('nan')):.1f}% / {q.get('classifier_accuracy_projection', float('nan')):.1f}% (same {q['n_images']} images)"),
        ("fmnist_classifier", f"{c['quality']['test_accuracy']:.2f}% on the 10,000 official test images "
                              f"({c['training']['epochs']} epochs, {c['training']['train_seconds'] / 60:.0f} min on {c['training']['hardware']})"),
    ]
    out = ["| Fashion-MNIST | |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows]
    out += ["", "Samples and projections (top: test images, bottom: PGD projection):", "",
            "![fmnist samples](pretrained/fmnist28/samples.png) ![fmnist projection](pretrained/fmnist28/projection.png)"]
    return "\n".join(out)


def _bench_section(name: str, figures=()) -> str:
    p = ROOT / "benchmarks" / "results" / name
    res = json.loads((p / f"{name}.json").read_text())
    st = res["settings"]
    if any("device" in r for r in res["results"]):  # rows kept from earlier runs may come from another device
        by_dev: dict = {}
        for r in res["results"]:
            by_dev.setdefault(r.get("device", st["device"]), []).append(r)
        where = "; ".join(f"{len(rs)} rows on {d}, {sum(r.get('seconds', 0) for r in rs) / 60:.1f} min of compute "
                          f"summed" for d, rs in sorted(by_dev.items())) + " (a re-run keeps the rows it does not redo)"
    else:
        where = f"device {st['device']}, {res['seconds'] / 60:.0f} min in all"
    head = (f"n = {st['n']}, seed {st['seed']}, prior sha256 "
            f"{st['prior_sha256'].get('generator.safetensors', '')[:12]}…, overrides {st.get('overrides') or 'none'}; "
            f"{where}.")
    figures = list(figures) + [f["file"] for f in (res.get("figures") or {}).values()]
    figs = "".join(f"\n![{f}](benchmarks/results/{name}/{f})" for f in figures if (p / f).exists())
    return head + "\n\n" + (p / f"{name}.md").read_text() + figs


def uair_section() -> str:
    """The trained reconstructors against Pajot et al.'s figures: their budget, their learning curves, the paired
    reference at the same budget (from the reconstruct bench's rows)."""
    res = json.loads((ROOT / "benchmarks" / "results" / "reconstruct" / "reconstruct.json").read_text())
    rows = {(r["corruption"], r["method"]): r for r in res["results"]}
    out = ["| corruption | Pajot et al. MSE | uair MSE (x theirs) | uair_paired MSE (x theirs) | steps x batch | "
           "train min (uair / paired) | uair validation MSE along training (step: MSE) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    pace = []
    for (c, m), r in rows.items():
        if m != "uair" or "pajot_unsupervised_mse" not in r:
            continue
        ref, pr = r["pajot_unsupervised_mse"], rows.get((c, "uair_paired"))
        rc = r["reconstructor"]
        pts = rc.get("val_curve") or ([{"step": rc["steps"], "val_mse": rc["val_mse_by_epoch"][-1]}]
                                      if rc.get("val_mse_by_epoch") and rc.get("epochs") == 1 else [])
        curve = ", ".join(f"{v['step']}: {v['val_mse']:.3f}" for v in pts)
        paired = f"{pr['mse_mean']:.4f} ({pr['mse_mean'] / ref:.1f}x)" if pr else ""
        pmin = f"{pr['reconstructor']['train_seconds'] / 60:.0f}" if pr else ""
        out.append(f"| {c} | {ref} | {r['mse_mean']:.4f} ({r['mse_mean'] / ref:.1f}x) | {paired} | "
                   f"{rc.get('steps')} x {rc.get('batch_size')} | {rc['train_seconds'] / 60:.0f} / {pmin} | {curve} |")
        pace.append(rc["train_seconds"] / rc["steps"])
    if pace:
        sec, steps = sum(pace) / len(pace), rc["steps"]
        out = [f"Each network trained on the observations of {rc.get('train_images')} training faces (each corrupted "
               f"once) for {rc.get('epochs')} epoch ({steps} steps); validation MSE on the first {rc.get('n_val')} "
               "validation faces, the table's MSE on the bench's test faces.", ""] + out
        out += ["", f"At the pace measured here ({sec:.2f} s per unsupervised step of batch {rc.get('batch_size')} on "
                    f"{rc.get('hardware')}), Pajot et al.'s schedule of 800 epochs of 400 steps ({800 * 400 / steps:.0f} "
                    f"times this one) would take {sec * 800 * 400 / 86400:.1f} days per corruption."]
    return "\n".join(out)


def gan_losses_section() -> str:
    p = ROOT / "benchmarks" / "results" / "gan_losses"
    res = json.loads((p / "gan_losses.json").read_text())
    st = res["settings"]
    head = (f"mimic {st['mimic']}, torch {st['torch']}, {st['threads']} threads; one row of samples per loss from the "
            "same z below.")
    return (head + "\n\n" + (p / "gan_losses.md").read_text().rstrip("\n")
            + "\n\n![samples per loss](benchmarks/results/gan_losses/samples.png)")


def shifted_section() -> str:
    p = ROOT / "benchmarks" / "results" / "shifted"
    res = json.loads((p / "shifted.json").read_text())
    meta, rows = res["meta"], res["results"]
    mins = sum(r.get("seconds", 0) for r in rows) / 60
    head = (f"{meta['faces']} ({meta['device']}, torch {meta['torch']}, {mins:.0f} min of compute summed); "
            "PSNR in dB, gain over PGD with its paired 95% interval.")
    return head + "\n\n" + (p / "shifted.md").read_text()


def _blind_settings(rows, method: str = "blind") -> str:
    """The blind preset's measured settings of the group term, the adaptation and do-no-harm, as ``method``'s rows
    record them (an ``_adapt`` row: the preset's with ``mimic.tasks.ADAPT``)."""
    from mimic.tasks import ADAPT

    cfg = next((r["config"] for r in rows if r["method"] == method.removesuffix("_adapt")), {})
    cfg = {**cfg, **ADAPT} if method.endswith("_adapt") else cfg
    return (f"(`lam_group` {cfg.get('lam_group', 0)}, `adapt_steps` {cfg.get('adapt_steps', 0)}, "
            f"`no_harm` {cfg.get('no_harm', 0)})")


def _unseen_run(folder: str, what) -> str:
    """A `mimic bench unseen` run (benchmarks/results/<folder>): a line on its faces and compute, what ``what(rows)``
    says of its rows, then its table."""
    p = ROOT / "benchmarks" / "results" / folder
    res = json.loads((p / "unseen.json").read_text())
    st, rows = res["settings"], res["results"]
    mins = sum(r.get("seconds", 0) for r in rows) / 60
    devs = ", ".join(sorted({r["device"] for r in rows if r["method"] != "observed"}))
    head = (f"{st['faces']}, {st['n']} per kind and strength, groups of {st['batch_size']} ({devs}, torch "
            f"{res['versions']['torch']}, {mins:.0f} min of compute summed); PSNR in dB" + what(rows))
    return head + "\n\n" + (p / "unseen.md").read_text()


def unseen_section() -> str:
    return _unseen_run("unseen", lambda rows: (
        ", blind - PGD with its paired 95% interval. The blind rows were measured with the preset "
        + _blind_settings(rows) + "; " + ("the blind_adapt rows " + _blind_settings(rows, "blind_adapt")
                                         + ", the blind preset as it is now."
                                         if any(r["method"] == "blind_adapt" for r in rows) else "")))


def mild_section() -> str:
    """The mild half of `mimic bench unseen` (benchmarks/results/mild): does the blind preset do no harm."""
    return _unseen_run("mild", lambda rows: (
        ". The blind rows: the blind preset as it is now " + _blind_settings(rows) + "."))


def _paired(a, b) -> str:
    """mean of a - b with its paired 95% interval (Student t)."""
    from mimic.metrics import mean_ci95

    m, h = mean_ci95([x - y for x, y in zip(a, b)])
    return f"{m:+.2f} ± {h:.2f}"


def adapt_section() -> str:
    """The ``*_adapt`` rows on the six tasks (benchmarks/results/blind_adapt, the first faces of the blind table)
    beside the same faces' rows of the blind table, and the paired differences the adaptation is judged by."""
    new = json.loads((ROOT / "benchmarks" / "results" / "blind_adapt" / "blind.json").read_text())
    old = json.loads((ROOT / "benchmarks" / "results" / "blind" / "blind.json").read_text())
    n = new["settings"]["n"]
    adapted = [m for m in ("pgd_adapt", "mimic_adapt", "blind_adapt", "oracle_adapt")
               if any(r["method"] == m for r in new["results"])]
    # (label, new method, method it is compared with, the table it comes from)
    pairs = [(f"{a} - {b}", a, b, src) for a, b, src in (
        ("blind_adapt", "blind", old), ("mimic_adapt", "mimic", old), ("oracle_adapt", "oracle", old),
        ("blind_adapt", "pgd_adapt", new), ("mimic_adapt", "pgd_adapt", new)) if a in adapted
        and (src is old or b in adapted)]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    head = ["task", "PGD", "blind (no adaptation)", "MimicGAN (task preset)", "oracle", *adapted]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    diff = ["| task | " + " | ".join(p[0] for p in pairs) + " |", "|" + " --- |" * (len(pairs) + 1)]
    for task in dict.fromkeys(r["task"] for r in new["results"]):
        o, nw = old["per_image"][task], new["per_image"][task]
        cells = [task] + [f"{mean(o[m]['psnr'][:n]):.2f}" for m in ("pgd", "blind", "mimic", "oracle")]
        cells += [f"{mean(nw[m]['psnr']):.2f}" if m in nw else "—" for m in adapted]
        out.append("| " + " | ".join(cells) + " |")
        dcells = [task]
        for _, a, b, src in pairs:
            other = (src["per_image"][task].get(b) or {}).get("psnr")
            dcells.append(_paired(nw[a]["psnr"], other[:n]) if a in nw and other else "—")
        diff.append("| " + " | ".join(dcells) + " |")
    secs = {r["method"]: [] for r in new["results"]}
    for r in new["results"]:
        secs[r["method"]].append(r["seconds"])
    dev = new["results"][0]["device"]
    timing = ", ".join(f"{m} {sum(v) / len(v):.0f} s" for m, v in secs.items())
    head = (f"{new['settings']['faces']}, PSNR in dB; PGD, blind (the preset without adaptation: `adapt_steps` 0, "
            "`no_harm` 0, `lam_group` 0), MimicGAN (each task's preset) and oracle are the same faces' rows of the "
            "table above. blind_adapt is the blind preset as it is now (the group term 0.03, 150 adaptation steps, "
            "do-no-harm 0.025): its gain over the blind column is the group term's and the adaptation's together, "
            "not measured apart on these tasks; pgd_adapt, mimic_adapt and oracle_adapt are PGD (IAGAN made blind by "
            "assuming no corruption), each task's preset and the oracle with the same adaptation "
            "(`mimic.tasks.ADAPT`; PGD and the oracle have no do-no-harm). Seconds per group of 25 on "
            f"{dev}: {timing} (timed while other work shared the cores).")
    return (head + "\n\n" + "\n".join(out) + "\n\nPaired per face, with 95% intervals (dB):\n\n"
            + "\n".join(diff))


def shifted_now_section() -> str:
    """The blind preset as it is now on the shifted settings (benchmarks/results/shifted_now, its first faces) against
    the committed shifted rows of the same faces (PGD and the blind preset as it was), paired per face."""
    from dataclasses import asdict

    from mimic.tasks import get_task

    new = json.loads((ROOT / "benchmarks" / "results" / "shifted_now" / "shifted.json").read_text())
    old = json.loads((ROOT / "benchmarks" / "results" / "shifted" / "shifted.json").read_text())
    o = {(r["setting"], r["method"]): r["psnr"] for r in old["results"]}
    rows = [r for r in new["results"] if r["method"] == "blind"]
    n = rows[0]["n"]
    out = ["| setting | PGD | blind as it was | blind now | now - as it was | now - PGD |", "|" + " --- |" * 6]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    d_old, d_pgd = [], []
    for r in rows:
        pgd, was = o[r["setting"], "pgd"][:n], o[r["setting"], "blind"][:n]
        d_old.append(mean([a - b for a, b in zip(r["psnr"], was)]))
        d_pgd.append(mean([a - b for a, b in zip(r["psnr"], pgd)]))
        out.append(f"| {r['setting']} | {mean(pgd):.2f} | {mean(was):.2f} | {mean(r['psnr']):.2f} | "
                   f"{_paired(r['psnr'], was)} | {_paired(r['psnr'], pgd)} |")
    out.append(f"| mean of {len(rows)} | | | | {mean(d_old):+.2f} | {mean(d_pgd):+.2f} |")
    mins = sum(r.get("seconds", 0) for r in rows) / 60
    cfg = rows[0].get("config") or asdict(get_task(None).config)  # rows record their config (earlier runs did not)
    head = (f"The first {n} of the 50 faces ({new['meta']['faces']}; {new['meta']['device']}, {mins:.0f} min of "
            f"compute summed, timed while other work shared the cores): the blind preset as it is now (`lam_group` {cfg['lam_group']}, `adapt_steps` "
            f"{cfg['adapt_steps']}, `no_harm` {cfg['no_harm']})"
            + " against the rows above on the same faces (PGD, and the blind preset as it was when they were "
            "measured), paired per face with 95% intervals.")
    return head + "\n\n" + "\n".join(out)


def main():
    readme = (ROOT / "README.md").read_text()
    sections = (("prior", prior_section), ("blind", blind_section), ("speed", speed_section), ("fmnist", fmnist_section),
                ("classify", lambda: _bench_section("classify", ["classify.png", "classify_binarize.png",
                                                                  "classify_drop_pixels.png", "classify_blur_negative.png"])),
                ("defense", lambda: _bench_section("defense", ["defense_universal.png", "defense_fgsm.png"])),
                ("reconstruct", lambda: _bench_section("reconstruct")), ("shifted", shifted_section),
                ("shifted_now", shifted_now_section), ("gan_losses", gan_losses_section),
                ("uair", uair_section),
                ("unseen", unseen_section), ("mild", mild_section), ("adapt", adapt_section),
                ("scale", lambda: (ROOT / "benchmarks" / "results" / "scale" / "scale.md").read_text()))
    for name, fn in sections:
        pat = re.compile(rf"(<!-- BEGIN:{name} -->\n)(?:.*?\n)?(<!-- END:{name} -->)", re.S)
        if pat.search(readme):
            try:
                body = fn()
            except FileNotFoundError as e:
                print(f"skip {name}: {e}")
                continue
            readme = pat.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), readme)
    (ROOT / "README.md").write_text(readme)


if __name__ == "__main__":
    main()
