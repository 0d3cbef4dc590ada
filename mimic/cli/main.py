"""The ``mimic`` command line. It only parses options and calls the API.

Exit codes: 0 success; 1 finished but some inputs were skipped; 2 bad usage or input
(one-line error, no traceback).
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from ..inputs import InputError
from ..priors import PriorError
from ..priors.losses import list_losses
from ..surrogate import list_surrogates


def _console():
    """A rich console for tables: stdout, wide enough when not a terminal (pipes, tests)."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=200)


def _err(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except (InputError, PriorError, FileNotFoundError, KeyError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            _err(str(msg).splitlines()[0] if str(msg) else type(e).__name__)
            sys.exit(2)
        except KeyboardInterrupt:
            _err("interrupted; finished images are kept, re-run the same command to resume")
            sys.exit(130)

    return wrapper


def _count(ctx, param, value):
    """Counts (steps, iterations, restarts) are integers >= 0 (>= 1 for restarts)."""
    lo = 1 if param.name == "restarts" else 0
    if value is not None and value < lo:
        raise click.BadParameter(f"must be >= {lo}, got {value}")
    return value


def _at_least_one(ctx, param, value):
    """Counts that must be >= 1 (D steps per G step)."""
    if value is not None and value < 1:
        raise click.BadParameter(f"must be >= 1, got {value}")
    return value


def _rate(ctx, param, value):
    """Learning rates and weights are finite and > 0 (>= 0 for keep_tv)."""
    import math

    if value is None:
        return value
    if not math.isfinite(value) or value < 0 or (value == 0 and param.name != "keep_tv"):
        raise click.BadParameter(f"must be a finite number {'>= 0' if param.name == 'keep_tv' else '> 0'}, got {value}")
    return value


def schedule_options(fn):
    for opt in reversed([
        click.option("--T", "T", type=int, default=None, callback=_count, help="Outer iterations."),
        click.option("--T1", "T1", type=int, default=None, callback=_count, help="Surrogate steps per outer iteration."),
        click.option("--T2", "T2", type=int, default=None, callback=_count, help="Latent steps per outer iteration."),
        click.option("--warm-steps", type=int, default=None, callback=_count, help="Latent steps of the warm start."),
        click.option("--adapt-steps", type=int, default=None, callback=_count,
                     help="Generator adaptation steps after the alternation (0: off; the *_adapt bench methods use 150)."),
        click.option("--restarts", type=int, default=None, callback=_count,
                     help="Random restarts: starts per image (lowest observation loss kept)."),
        click.option("--lr-g", type=float, default=None, callback=_rate, help="Latent learning rate (gamma_g)."),
        click.option("--lr-s", type=float, default=None, callback=_rate, help="Surrogate learning rate (gamma_s)."),
        click.option("--surrogate", type=click.Choice([k for k in list_surrogates() if k != "identity"]), default=None,
                     help="Surrogate kind."),
        click.option("--obs-norm", type=click.Choice(["l1", "l2"]), default=None,
                     help="Norm of the surrogate's observation loss (l2 fits the mean: random masks, dropped pixels)."),
        click.option("--fill/--no-fill", "fill", default=None,
                     help="Leave pixels written with a constant fill value (detected per image) out of the fit."),
        click.option("--keep-observed/--no-keep-observed", "keep_observed", default=None,
                     help="With --fill: output the observation's own pixels where it is not missing "
                          "(for corruptions that only remove pixels); an observation with nothing missing gets its "
                          "denoised residual added (for corruptions that only add noise)."),
        click.option("--keep-tv", "keep_tv", type=float, default=None, callback=_rate,
                     help="With --keep-observed: TV weight on the residual of an observation with nothing missing, "
                          "in units of its estimated noise sigma (0: not added)."),
        click.option("--clip/--no-clip", "clip", default=None,
                     help="Pixels piled up at an image's own maximum (minimum) level are clipped: they only bound the fit."),
    ]):
        fn = opt(fn)
    return fn


def _pop_overrides(kw) -> dict:
    keys = ("T", "T1", "T2", "warm_steps", "adapt_steps", "restarts", "lr_g", "lr_s", "surrogate", "obs_norm", "fill",
            "keep_observed",
            "keep_tv", "clip")
    vals = {k: kw.pop(k, None) for k in keys}
    return {k: v for k, v in vals.items() if v is not None}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mimicgan", message="mimic %(version)s")
def cli():
    """mimic: blind recovery of corrupted images with a GAN prior (MimicGAN)."""


def _common(fn):
    fn = click.option("--task", default=None, help="Task preset (see `mimic tasks`); default: blind.")(fn)
    fn = click.option("--prior", default=None, help="Shipped prior name or folder (default: the task's, celeba64 for faces).")(fn)
    fn = click.option("--batch-size", type=click.IntRange(min=1), default=25, show_default=True,
                      help="Observations per group (one surrogate each).")(fn)
    fn = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")(fn)
    fn = click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)(fn)
    fn = click.option("--trust-unverified", is_flag=True,
                      help="Use a prior folder whose card lists no sha256 for its weights.")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")(fn)
    fn = click.option("--clean", type=click.Path(path_type=Path), default=None,
                      help="Folder of clean references with the same names: adds PSNR/SSIM.")(fn)
    fn = click.option("--strict-size", is_flag=True, help="Refuse images that are not at the prior's resolution.")(fn)
    fn = click.option("--overwrite", is_flag=True, help="Redo images already in the output folder.")(fn)
    fn = click.option("--quiet", is_flag=True, help="No progress bar.")(fn)
    return schedule_options(fn)


def _print_notices(res):
    for n in res.notices:
        click.echo(f"note: {n}", err=True)
    for f, why in res.skipped:
        click.echo(f"skipped: {f}: {why}", err=True)
    for f, score in getattr(res, "out_of_prior", []):
        click.echo(f"warning: {f}: the prior may have made up a face (face score {score:.3f} < "
                   f"{res.face_threshold:.3f}); is it a 64x64 aligned face?", err=True)


def _ood_summary(n: int) -> str:
    return f"{n} image(s) may be outside the prior (warnings above)"


@cli.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--method", type=click.Choice(["mimic", "pgd"]), default="mimic", show_default=True)
@click.option("--reconstructor", default=None, metavar="NAME_OR_PATH",
              help="A trained reconstructor (`mimic train reconstructor`): one forward pass per image instead of "
                   "the test-time recovery; not blind (trained for one corruption).")
@_common
@handle_errors
def recover(input, out, method, reconstructor, quiet, as_json, **kw):
    """Recover every image of INPUT into OUT (recovered/, mimicked/, report.json, grid.png)."""
    from ..runner import recover_folder

    if reconstructor is not None and method != "mimic":
        raise click.BadParameter("a reconstructor replaces the recovery method; leave --method out",
                                 param_hint="'--reconstructor'")
    ov = _pop_overrides(kw)
    res = recover_folder(input, out, method=method, progress=not quiet and not as_json, reconstructor=reconstructor,
                         **kw, **ov)
    if res.rank != 0:  # under torchrun rank 0 speaks for the folder
        sys.exit(0)
    _print_notices(res)
    if as_json:
        click.echo(json.dumps({"out": str(out), "recovered": res.done, "resumed": res.resumed,
                               "skipped": [{"input": a, "reason": b} for a, b in res.skipped],
                               "metrics": res.metrics, "notices": res.notices,
                               "out_of_prior": res.report.get("out_of_prior")}))
    else:
        msg = f"recovered {res.done} image(s) into {out / 'recovered'}"
        if res.metrics:
            msg += (f"; PSNR {res.metrics['psnr_mean']:.2f} dB, SSIM {res.metrics['ssim_mean']:.3f} "
                    f"(n={res.metrics['n']})")
        if res.out_of_prior:
            msg += "; " + _ood_summary(len(res.out_of_prior))
        click.echo(msg)
    sys.exit(1 if res.skipped else 0)


@cli.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@_common
@handle_errors
def compare(input, out, quiet, as_json, **kw):
    """Run MimicGAN and plain PGD on the same observations and compare them."""
    from rich.console import Console
    from rich.table import Table

    from ..runner import compare_folder

    ov = _pop_overrides(kw)
    r = compare_folder(input, out, progress=not quiet and not as_json, **kw, **ov)
    if r["mimic"].rank != 0:  # under torchrun rank 0 speaks for the folder
        sys.exit(0)
    _print_notices(r["mimic"])
    m = r["metrics"]
    if as_json:
        click.echo(json.dumps({k: v for k, v in m.items() if k != "images"}))
        sys.exit(1 if r["mimic"].skipped else 0)
    if m.get("mimic"):
        t = Table(title=f"{m['task']}: MimicGAN vs PGD (n={m['mimic']['n']})")
        for c in ("method", "PSNR (dB)", "SSIM"):
            t.add_column(c)
        for k in ("pgd", "mimic"):
            t.add_row(k, f"{m[k]['psnr_mean']:.2f}", f"{m[k]['ssim_mean']:.3f}")
        t.add_row("gain", f"{m['gain_psnr_db']:+.2f}", f"{m['gain_ssim']:+.3f}")
        _console().print(t)
    click.echo(f"wrote {out / 'mimic'}, {out / 'pgd'}, {out / 'grid.png'}, {out / 'metrics.json'}"
               + (f"; {_ood_summary(m['out_of_prior'])}" if m.get("out_of_prior") else ""))
    sys.exit(1 if r["mimic"].skipped else 0)


@cli.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--task", required=True, help="Task preset or corruption name (see `mimic tasks`, `mimic corruptions`).")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--size", type=int, default=None, help="Resolution of the clean images (default 64; 28 for Fashion-MNIST corruptions).")
@click.option("--strict-size", is_flag=True)
@click.option("--overwrite", is_flag=True)
@handle_errors
def corrupt(input, task, out, seed, size, strict_size, overwrite):
    """Apply a registered corruption to every image of INPUT (to make test sets)."""
    from ..runner import corrupt_folder

    res = corrupt_folder(input, out, task=task, seed=seed, resolution=size, strict_size=strict_size, overwrite=overwrite)
    _print_notices(res)
    click.echo(f"wrote {res.done} observation(s) into {out}" + (f" ({res.resumed} already there)" if res.resumed else ""))
    sys.exit(1 if res.skipped else 0)


@cli.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list (name, corruption, prior, description, config) instead of the table.")
def tasks(as_json):
    """List the task presets and their hyper-parameters."""
    from dataclasses import asdict

    from rich.table import Table

    from ..tasks import TASKS

    if as_json:
        click.echo(json.dumps([{"name": k, "corruption": v.corruption, "prior": v.prior, "description": v.description,
                                "config": asdict(v.config)} for k, v in TASKS.items()], default=str))
        return
    t = Table(title="task presets")
    for c in ("task", "corruption", "lam_I", "lam_adv", "lr_s", "lr_g", "surrogate", "schedule", "description"):
        t.add_column(c)
    for k, v in TASKS.items():
        c = v.config
        t.add_row(k, v.corruption or "-", f"{c.lam_I:g}", f"{c.lam_adv:g}", f"{c.lr_s:g}", f"{c.lr_g:g}", c.surrogate,
                  f"warm {c.warm_steps}, T={c.T} x (T1={c.T1}, T2={c.T2})", v.description)
    _console().print(t)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (name, domain, params) instead of the lines.")
def corruptions(as_json):
    """List the registered corruptions."""
    from ..corruptions import get_corruption, list_corruptions

    if as_json:
        click.echo(json.dumps([{"name": n, "domain": get_corruption(n).domain, "params": get_corruption(n).params()}
                               for n in list_corruptions()], default=str))
        return
    for n in list_corruptions():
        c = get_corruption(n)
        click.echo(f"{n:22s} {c.domain:7s} {json.dumps(c.params())}")


@cli.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list (name, path, summary, terms, quality, sha256) instead of the lines.")
def priors(as_json):
    """List the shipped priors."""
    from ..priors import list_priors, pretrained_dir

    d = pretrained_dir()
    names = list_priors()
    if as_json:
        rows = []
        for n in names:
            card = json.loads((d / n / "card.json").read_text())
            rows.append({"name": n, "path": str(d / n), "summary": card.get("summary", ""), "terms": card.get("terms"),
                         "quality": card.get("quality", {}), "sha256": card.get("sha256", {})})
        click.echo(json.dumps(rows))
        return
    if not names:
        click.echo(f"no priors in {d}")
    for n in names:
        card = json.loads((d / n / "card.json").read_text())
        q = card.get("quality", {})
        extra = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in q.items()
                          if k in ("projection_psnr_mean", "projection_ssim_mean", "d_auc", "test_accuracy"))
        click.echo(f"{n:18s} {card.get('summary', '')}" + (f"  [{extra}]" if extra else ""))


@cli.group()
def train():
    """Train priors and the classifier."""


@train.command("prior")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Image folder, or folder with Fashion-MNIST IDX files.")
@click.option("--arch", type=click.Choice(["dcgan64", "fmnist28"]), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--epochs", default=25, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--holdout", default=1000, show_default=True, help="Last sorted images held out (never trained on).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (resume later).")
@click.option("--keep-epochs", is_flag=True, help="Also keep each epoch's checkpoint as OUT/checkpoint_epNNN.pt.")
@click.option("--loss", type=click.Choice(list_losses()), default="dcgan", show_default=True,
              help="GAN loss: non-saturating cross-entropy (DCGAN), least squares (LSGAN), Wasserstein critic with "
                   "gradient penalty (WGAN-GP; D gets layer norm in place of batch norm) or hinge (SAGAN).")
@click.option("--n-critic", type=int, default=1, show_default=True, callback=_at_least_one,
              help="D steps per G step, each on a new batch (5 is the WGAN-GP paper's choice for --loss wgan-gp).")
@click.option("--spectral-norm", is_flag=True, help="Spectral norm on every convolution and linear layer of D.")
@click.option("--attention", is_flag=True, help="A SAGAN self-attention block at 32x32 in G and D (dcgan64 only).")
@handle_errors
def train_prior_cmd(data, arch, out, epochs, batch_size, device, seed, holdout, resume, max_steps, keep_epochs,
                    loss, n_critic, spectral_norm, attention):
    """Train a GAN prior (z ~ U(-1,1)) with checkpoints, sample grids and resume.

    The loss (--loss dcgan|lsgan|wgan-gp|hinge), D steps per G step (--n-critic N), spectral norm in D
    (--spectral-norm) and self-attention (--attention) go into the checkpoint and the exported config.json; a
    resumed run must keep them.
    """
    from ..api import resolve_device
    from ..priors.train import TrainConfig, export_prior, train_prior

    cfg = TrainConfig(arch=arch, epochs=epochs, batch_size=batch_size, seed=seed, holdout=holdout,
                      flip=arch == "dcgan64", crop_fraction=108 / 178 if arch == "dcgan64" else 1.0,
                      keep_epochs=keep_epochs, loss=loss, n_critic=n_critic, spectral_norm=spectral_norm,
                      attention=attention)
    if attention and arch != "dcgan64":  # before any data is read
        raise click.BadParameter(f"only built for --arch dcgan64 (at 32x32), not {arch}", param_hint="'--attention'")
    dev = resolve_device(device)
    s = train_prior(data, out, cfg, device=str(dev), resume=resume, max_steps=max_steps)
    if "stopped_at_step" in s:
        click.echo(f"stopped at step {s['stopped_at_step']}; resume with --resume")
        return
    conf = export_prior(out / "checkpoint.pt", out)
    click.echo(f"trained {conf['epochs']} epochs; exported generator/discriminator to {out}")


@train.command("reconstructor")
@click.option("--corruption", required=True, help="The registered corruption the observations went through (see "
                                                 "`mimic corruptions`).")
@click.option("--params", default="", help="Its settings, e.g. 'p=0.95' or 'l=3,sigma=0.15' (default: registered).")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Folder of face images: each training face is corrupted once and only its observation is kept.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--variant", type=click.Choice(["unsupervised", "paired"]), default="unsupervised", show_default=True,
              help="unsupervised: Pajot et al. (observations only); paired: the supervised reference.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr-g", type=float, default=1e-4, show_default=True, callback=_rate)
@click.option("--lr-d", type=float, default=4e-4, show_default=True, callback=_rate)
@click.option("--lam-lik", type=float, default=1.0, show_default=True, help="Weight of the likelihood term.")
@click.option("--width", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
@click.option("--seed", type=click.IntRange(0, 2**62), default=0, show_default=True)
@click.option("--holdout", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Last sorted images held out (never trained on).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps (resume later).")
@handle_errors
def train_reconstructor_cmd(corruption, params, data, out, variant, epochs, batch_size, lr_g, lr_d, lam_lik, width,
                            device, seed, holdout, resume, max_steps):
    """Train a reconstructor for one known corruption from corrupted observations only (Pajot et al., ICLR 2019).

    Checkpoints, a sample grid per epoch (OUT/samples), the validation faces' MSE per epoch (OUT/history.json),
    resumes; at the end OUT/reconstructor/ (weights, config, card with sha256) for `mimic recover --reconstructor`.
    """
    from ..api import resolve_device
    from ..bench.report_utils import parse_overrides
    from ..reconstructor import ReconstructorConfig, train_reconstructor

    try:
        kw = parse_overrides(params) if params else {}
        cfg = ReconstructorConfig(corruption=corruption, corruption_params=kw, variant=variant, epochs=epochs,
                                  batch_size=batch_size, lr_g=lr_g, lr_d=lr_d, lam_lik=lam_lik, width=width,
                                  holdout=holdout, seed=seed)
    except (ValueError, TypeError, KeyError, SyntaxError) as e:
        raise click.BadParameter(str(e).splitlines()[0], param_hint="'--corruption' / '--params'") from None
    s = train_reconstructor(data, out, cfg, device=str(resolve_device(device)), resume=resume, max_steps=max_steps)
    if s["stopped"]:
        click.echo(f"stopped at step {s['global_step']}; resume with --resume")
        return
    last = s["history"][-1] if s["history"] else {}
    click.echo(f"trained {cfg.epochs} epochs (validation MSE {last.get('val_mse', float('nan')):.4f} on [-1, 1]); "
               f"reconstructor in {s['reconstructor']}")


@train.command("classifier")
@click.option("--data", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--epochs", default=15, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@handle_errors
def train_classifier_cmd(data, out, epochs, device, seed):
    """Train the Fashion-MNIST classifier."""
    from ..api import resolve_device
    from ..priors.train import train_classifier

    s = train_classifier(data, out, epochs=epochs, device=str(resolve_device(device)), seed=seed)
    click.echo(f"test accuracy {s['test_accuracy']:.2f}% -> {out}")


@cli.command("prior-report")
@click.argument("name")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Folder of clean images (default: the prior's held-out split).")
@click.option("--n", default=200, show_default=True, help="Held-out images to project.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the figures as JSON to this file ('-': print JSON instead of the table).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--write-card", "card_dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Write a model card (card.json, README.md, samples.png, projection.png) with these figures into "
                   "DIR (never into the package's own pretrained/ folder).")
@click.option("--trust-unverified", is_flag=True, help="Load weights that card.json lists no sha256 for.")
@click.option("--no-card", is_flag=True, hidden=True, help="Accepted for old scripts: no card is written by default.")
@handle_errors
def prior_report_cmd(name, data, n, json_path, device, card_dir, trust_unverified, no_card):
    """Measure a prior's quality figures (projection PSNR/SSIM, D sanity) and print them (a card only with --write-card)."""
    from ..api import resolve_device
    from ..io import save_json
    from ..priors import load_prior
    from ..priors.report import check_card_dir, prior_report, report_classifier

    if card_dir is not None:
        check_card_dir(card_dir)  # before the (long) measurement
    dev = resolve_device(device)
    # a shipped name or a folder: a 28x28 gray prior gets the classifier's figures too
    pr = load_prior(name, device=dev, trust_unverified=trust_unverified)
    clf = report_classifier(pr, device=dev)
    q = prior_report(pr, data=data, n=n, device=str(dev), card_dir=card_dir, classifier=clf,
                     groups_per_call=8 if dev.type == "cuda" else 2)
    if json_path is not None and str(json_path) == "-":
        click.echo(json.dumps(q, indent=2))
    else:
        t = __import__("rich.table", fromlist=["Table"]).Table(title=f"prior {name}")
        t.add_column("figure")
        t.add_column("value")
        for k, v in q.items():
            t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        _console().print(t)
        if json_path:
            save_json(json_path, q)
    if card_dir is not None:
        click.echo(f"wrote the model card into {card_dir}", err=True)


def _trust_option(fn):
    return click.option("--trust-unverified", is_flag=True,
                        help="Use a prior (or classifier) folder whose card lists no sha256 for its weights.")(fn)


@cli.group()
def bench():
    """Benchmarks that print a table (and write JSON with --out)."""


@bench.command("scale")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--n", default=100, show_default=True, help="Images of the throughput runs (0: skip them).")
@click.option("--procs", default=2, show_default=True, help="Processes (torchrun) against one process with as many threads.")
@click.option("--task", default="blind", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--schedule", default="--T 2", show_default=True, help="Schedule options of the throughput runs.")
@click.option("--memory-sizes", default="1000,20000", show_default=True,
              help="Folder sizes of the memory runs (minimal schedule; empty: skip them).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Faces to build the folders from (default: the demo faces).")
@click.option("--prior", default=None, help="Prior name or folder (default: the task's).")
@_trust_option
@handle_errors
def bench_scale_cmd(out, n, procs, task, device, schedule, memory_sizes, data, prior, trust_unverified):
    """images/s of N processes (torchrun) against one with N threads; peak memory against the folder's size."""
    from ..bench.scale import bench_scale

    if procs < 1 or n < 0:
        raise InputError(f"--procs must be >= 1 and --n >= 0, got {procs}, {n}")
    sizes = tuple(int(x) for x in memory_sizes.split(",") if x.strip())
    extra = (["--prior", str(prior)] if prior else []) + (["--trust-unverified"] if trust_unverified else [])
    bench_scale(out, n=n, procs=procs, task=task, device=device, schedule=tuple(schedule.split()) + tuple(extra),
                memory_schedule=("--warm-steps", "0", "--T", "0", "--adapt-steps", "0", *extra),
                memory_sizes=sizes, data=data, log=lambda m: click.echo(m, err=True))
    click.echo((Path(out) / "scale.md").read_text())


@bench.command("gan-losses")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder (the runs in OUT/runs/<loss>/; a re-run with the same settings continues them and "
                   "keeps finished rows).")
@click.option("--losses", default=",".join(list_losses()), show_default=True, help="Comma-separated GAN losses.")
@click.option("--minutes", type=float, default=None, help="Training wall time per loss (trained in chunks).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Generator steps per loss (the default budget: 3000; WGAN-GP takes 5 critic steps per G step).")
@click.option("--n", type=click.IntRange(min=2), default=200, show_default=True,
              help="Held-out test faces (projection, D AUC) and generated images (SWD).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Image folder to train on and hold faces out of (default: the data root's celeba/).")
@click.option("--arch", type=click.Choice(["dcgan64"]), default="dcgan64", show_default=True)
@click.option("--spectral-norm", is_flag=True, help="Spectral norm in D, for every loss.")
@click.option("--attention", is_flag=True, help="Self-attention at 32x32 in G and D, for every loss.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--holdout", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Last sorted images held out (never trained on; the test faces are their second half).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--quick", is_flag=True, help="4 generator steps per loss, 8 faces and a short projection (a smoke run).")
@click.option("--weights", type=click.Choice(["auto", "ema", "raw"]), default="auto", show_default=True,
              help="Generator measured: its moving average, its own weights, or auto (raw for a run shorter than "
                   "the average's horizon of 1000 generator steps, where the average still mostly holds the initial "
                   "weights).")
@handle_errors
def bench_gan_losses_cmd(out, losses, minutes, steps, n, data, arch, spectral_norm, attention, batch_size, holdout,
                         device, seed, quick, weights):
    """GAN losses of a prior at an equal budget: projection PSNR/SSIM, D AUC, SWD, samples side by side."""
    import math

    from ..bench import gan_losses

    names = tuple(x.strip() for x in losses.split(",") if x.strip())
    bad = [x for x in names if x not in list_losses()]
    if bad or not names:
        raise click.BadParameter(f"unknown loss(es) {', '.join(bad) or '(none given)'}; valid: "
                                 f"{', '.join(list_losses())}", param_hint="'--losses'")
    if minutes is not None and steps is not None:
        raise click.UsageError("give one budget: --minutes or --steps, not both")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise click.BadParameter(f"must be a finite number > 0, got {minutes}", param_hint="'--minutes'")
    gan_losses.bench_gan_losses(out, losses=names, steps=steps, minutes=minutes, n=n, data=data, arch=arch,
                                spectral_norm=spectral_norm, attention=attention, batch_size=batch_size,
                                holdout=holdout, seed=seed, device=device, quick=quick, weights=weights,
                                log=lambda m: click.echo(m, err=True))
    click.echo((Path(out) / "gan_losses.md").read_text())


@bench.command("speed")
@click.option("--prior", default="celeba64", show_default=True)
@click.option("--task", default="gray_blur", show_default=True)
@click.option("--groups", default="1,4", show_default=True, help="Comma-separated numbers of groups of 25 to batch.")
@click.option("--device", "devices", multiple=True, type=click.Choice(["cpu", "cuda"]), help="Default: cpu and cuda when present.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write speed.json here.")
@click.option("--projected", is_flag=True, help="Project the default schedule's time from per-step timings "
              "instead of running it end to end.")
@_trust_option
@handle_errors
def bench_speed_cmd(prior, task, groups, devices, out, projected, trust_unverified):
    """Seconds per outer iteration, images/s of the default schedule, speed-up over a per-group loop."""
    from rich.table import Table

    from ..bench.speed import bench_speed
    from ..io import save_json

    rows = bench_speed(prior=prior, task=task, devices=list(devices) or None,
                       groups=tuple(int(g) for g in groups.split(",")), full=not projected,
                       trust_unverified=trust_unverified)
    t = Table(title=f"engine speed ({task}, default schedule, groups of 25, "
                    f"{'projected' if projected else 'measured end to end'})")
    for c in ("device", "groups", "images", "s / warm step", "s / outer it.", "s default schedule", "images/s",
              "loop s / outer it.", "speed-up vs loop"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["device"], str(r["groups"]), str(r["images"]), f"{r['sec_per_warm_step']:.3f}",
                  f"{r['sec_per_outer_iteration']:.2f}", f"{r['sec_default_schedule']:.1f}", f"{r['images_per_sec']:.2f}",
                  f"{r['loop_sec_per_outer_iteration']:.2f}" if "speedup_vs_loop" in r else "-",
                  f"{r['speedup_vs_loop']:.2f}x" if "speedup_vs_loop" in r else "-")
    _console().print(t)
    if out:
        import platform

        save_json(Path(out) / "speed.json", {"results": rows, "torch": __import__("torch").__version__,
                                             "cpu": platform.processor() or platform.machine(),
                                             "cpu_count": __import__("os").cpu_count()})


@bench.command("blind")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--prior", default="celeba64", show_default=True)
@click.option("--tasks", default="gray_blur,stylize,negative,stuck_pixels,occlusion,inpainting", show_default=True)
@click.option("--n", default=200, show_default=True, help="Held-out test faces per task.")
@click.option("--methods", default="pgd,pgd_r4,mimic,blind,oracle,supervised", show_default=True,
              help="pgd, mimic, blind (task-agnostic preset), pgd_rK / mimic_rK (K restarts), oracle (corruption "
                   "known), supervised (trained on corrupted/clean pairs); pgd, mimic, blind and oracle also with "
                   "_adapt (generator adaptation and do-no-harm, e.g. blind_adapt).")
@click.option("--supervised-steps", default=1500, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quick", is_flag=True, help="8 faces and a short schedule (a smoke run).")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Clean faces to use instead of the held-out test split.")
@_trust_option
@schedule_options
@handle_errors
def bench_blind_cmd(out, prior, tasks, n, methods, supervised_steps, device, seed, quick, data, trust_unverified, **kw):
    """Six blind tasks: MimicGAN vs PGD vs oracle on held-out faces (PSNR/SSIM with 95% CIs)."""
    from ..bench.blind import bench_blind

    ov = _pop_overrides(kw)
    r = bench_blind(out, prior=prior, tasks=tuple(tasks.split(",")), n=n, methods=tuple(methods.split(",")),
                    device=device, seed=seed, quick=quick, data=data, overrides=ov, supervised_steps=supervised_steps,
                    log=lambda m: click.echo(m, err=True), trust_unverified=trust_unverified)
    click.echo((Path(out) / "blind.md").read_text())


@bench.command("reconstruct")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--prior", default="celeba64", show_default=True)
@click.option("--n", default=200, show_default=True)
@click.option("--corruptions", default=None, metavar="LIST",
              help="Comma-separated corruptions (default: all of Pajot et al.'s); into an --out holding a run with "
                   "the same settings, the other corruptions' rows are kept.")
@click.option("--methods", default="mimic,mimic_keep,pgd,pgd_fill,pgd_keep,tv,biharmonic,dip", show_default=True,
              help="Methods to run (also oracle: the corruption known; mimic_adapt, pgd_adapt, oracle_adapt: with "
                   "generator adaptation and do-no-harm; uair, uair_paired: trained reconstructors, --reconstructors); "
                   "into an --out holding a run with the same settings, the other methods' rows are kept.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--dip-steps", default=1500, show_default=True)
@click.option("--dip-n", type=int, default=None, help="Deep Image Prior on the first N images only (one network per image; slow on a CPU).")
@click.option("--quick", is_flag=True)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Clean faces instead of the held-out test split.")
@click.option("--reconstructors", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Trained reconstructors for the uair / uair_paired rows: DIR/<corruption> and "
                   "DIR/<corruption>-paired (`mimic train reconstructor` runs).")
@_trust_option
@schedule_options
@handle_errors
def bench_reconstruct_cmd(out, prior, n, corruptions, methods, device, seed, dip_steps, dip_n, quick, data,
                          reconstructors, trust_unverified, **kw):
    """Pajot et al.'s corruptions: MimicGAN, PGD, TV, biharmonic inpainting, Deep Image Prior (MSE, PSNR)."""
    from ..bench.reconstruct import CORRUPTIONS, bench_reconstruct

    ov = _pop_overrides(kw)
    corruptions = tuple(CORRUPTIONS) if corruptions is None else tuple(corruptions.split(","))
    bench_reconstruct(out, prior=prior, n=n, corruptions=corruptions, methods=tuple(methods.split(",")),
                      device=device, seed=seed,
                      dip_steps=dip_steps, dip_n=dip_n, quick=quick, data=data, overrides=ov,
                      log=lambda m: click.echo(m, err=True), trust_unverified=trust_unverified,
                      reconstructors=reconstructors)
    click.echo((Path(out) / "reconstruct.md").read_text())


@bench.command("shifted")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: benchmarks/results/shifted, the committed results; --quick needs --out).")
@click.option("--prior", default="celeba64", show_default=True)
@click.option("--tasks", default="gray_blur,stylize,negative,stuck_pixels,occlusion,inpainting", show_default=True)
@click.option("--methods", default="pgd,mimic,blind", show_default=True,
              help="pgd, mimic (the task's preset), blind (task-agnostic preset); into an --out holding a run on the "
                   "same faces with the same settings, the rows this run does not measure are kept.")
@click.option("--which", type=click.Choice(["all", "shifted", "tuned"]), default="all", show_default=True,
              help="The settings to run: all, only the shifted ones, or only the tuned ones (the reference).")
@click.option("--n", default=50, show_default=True, help="Validation faces.")
@click.option("--offset", default=450, show_default=True, help="First validation face (450-499: used by no tuning sweep).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quick", is_flag=True, help="4 faces and a short schedule (a smoke run).")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Clean faces instead of the validation split.")
@_trust_option
@schedule_options
@handle_errors
def bench_shifted_cmd(out, prior, tasks, methods, which, n, offset, device, seed, quick, data, trust_unverified, **kw):
    """The presets off their tuned corruption settings: PGD, task preset, blind preset (PSNR, gain over PGD)."""
    from ..bench.shifted import bench_shifted

    if out is None:
        if quick:
            raise click.UsageError("--quick writes a smoke run: give --out (not the committed results)")
        out = Path("benchmarks") / "results" / "shifted"
    ov = _pop_overrides(kw)
    bench_shifted(out, prior=prior, tasks=tuple(tasks.split(",")), methods=tuple(methods.split(",")), which=which,
                  n=n, offset=offset, device=device, seed=seed, data=data, quick=quick, overrides=ov,
                  log=lambda m: click.echo(m, err=True), trust_unverified=trust_unverified)
    click.echo((Path(out) / "shifted.md").read_text())


@bench.command("unseen")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--prior", default="celeba64", show_default=True)
@click.option("--half", type=click.Choice(["heldout", "tune", "mild", "all"]), default="all", show_default=True,
              help="The held-out kinds (the figure that counts), the tuning kinds, the mild kinds (do no harm), "
                   "or all.")
@click.option("--kinds", default=None, help="Comma-separated damage kinds (default: the half's).")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="Held-out test faces (reported) or validation faces (for tuning).")
@click.option("--n", default=25, show_default=True, help="Faces per kind and strength.")
@click.option("--offset", default=0, show_default=True, help="First validation face (--split val).")
@click.option("--methods", default="pgd,blind,oracle", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quick", is_flag=True, help="4 faces and a short schedule (a smoke run).")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Clean faces instead of the held-out split.")
@_trust_option
@schedule_options
@handle_errors
def bench_unseen_cmd(out, prior, half, kinds, split, n, offset, methods, device, seed, quick, data, trust_unverified,
                     **kw):
    """Kinds of damage no preset was tuned on (a tuning and a held-out half): observation, PGD, blind, oracle."""
    from ..bench.unseen import bench_unseen
    from ..priors import load_prior

    if trust_unverified:  # loaded here (on the CPU; the bench moves it to its device), as bench_unseen takes a Prior
        prior = load_prior(prior, trust_unverified=True)

    bench_unseen(out, prior=prior, n=n, half=half, split=split, offset=offset,
                 kinds=kinds.split(",") if kinds else None, methods=tuple(methods.split(",")), device=device,
                 seed=seed, data=data, quick=quick, overrides=_pop_overrides(kw), log=lambda m: click.echo(m, err=True))
    click.echo((Path(out) / "unseen.md").read_text())


@bench.command("classify")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--prior", default="fmnist28", show_default=True)
@click.option("--classifier", default="fmnist_classifier", show_default=True)
@click.option("--corruptions", default="binarize,drop_pixels,blur_negative", show_default=True)
@click.option("--n", default=500, show_default=True, help="Random Fashion-MNIST test images (fixed by --seed).")
@click.option("--methods", default="pgd,mimic", show_default=True)
@click.option("--batch-size", default=25, show_default=True, help="Observations per surrogate.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quick", is_flag=True)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Folder with the Fashion-MNIST IDX files.")
@_trust_option
@schedule_options
@handle_errors
def bench_classify_cmd(out, prior, classifier, corruptions, n, methods, batch_size, device, seed, quick, data,
                       trust_unverified, **kw):
    """Fashion-MNIST: classifier accuracy on clean, corrupted, PGD- and MimicGAN-recovered images."""
    from ..bench.classify import bench_classify

    ov = _pop_overrides(kw)
    bench_classify(out, prior=prior, classifier=classifier, corruptions=tuple(corruptions.split(",")), n=n,
                   methods=tuple(methods.split(",")), batch_size=batch_size, device=device, seed=seed, quick=quick,
                   data=data, overrides=ov, log=lambda m: click.echo(m, err=True), trust_unverified=trust_unverified)
    click.echo((Path(out) / "classify.md").read_text())


@bench.command("defense")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--prior", default="fmnist28", show_default=True)
@click.option("--classifier", default="fmnist_classifier", show_default=True)
@click.option("--attacks", default="fgsm,pgd,bim,deepfool,cw", show_default=True)
@click.option("--defenses", default="none,defense_gan,cowboy,mimic", show_default=True)
@click.option("--n", default=500, show_default=True, help="Random Fashion-MNIST test images (fixed by --seed).")
@click.option("--gan-restarts", "gan_restarts", default=4, show_default=True, help="Random restarts of Defense-GAN and Cowboy.")
@click.option("--alphas", default="0.5,1,1.5,2", show_default=True, help="Scales of the universal perturbation.")
@click.option("--n-universal", type=int, default=None, help="Images for the universal perturbation (default: --n).")
@click.option("--n-adaptive", default=100, show_default=True, help="Images for the BPDA attack on the cleaner.")
@click.option("--adaptive-steps", default=5, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--quick", is_flag=True)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Folder with the Fashion-MNIST IDX files.")
@_trust_option
@schedule_options
@handle_errors
def bench_defense_cmd(out, prior, classifier, attacks, defenses, n, gan_restarts, alphas, n_universal, n_adaptive,
                      adaptive_steps, device, seed, quick, data, trust_unverified, **kw):
    """Fashion-MNIST: adversarial attacks (ART) against no defense, Defense-GAN, Cowboy and MimicGAN."""
    from ..bench.defense import bench_defense

    ov = _pop_overrides(kw)
    ds = tuple(defenses.split(","))
    bench_defense(out, prior=prior, classifier=classifier, attacks=tuple(attacks.split(",")), defenses=ds, n=n,
                  restarts=gan_restarts, alphas=tuple(float(a) for a in alphas.split(",")), n_universal=n_universal,
                  adaptive=tuple(d for d in ("defense_gan", "mimic") if d in ds), n_adaptive=n_adaptive,
                  adaptive_steps=adaptive_steps, device=device, seed=seed, quick=quick, data=data, overrides=ov,
                  log=lambda m: click.echo(m, err=True), trust_unverified=trust_unverified)
    click.echo((Path(out) / "defense.md").read_text())


def main():
    cli(prog_name="mimic")


if __name__ == "__main__":
    main()
