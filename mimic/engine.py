"""The MimicGAN engine: Algorithm 1 of Anirudh et al. (alternating surrogate and latent steps), and plain PGD.

Reads top to bottom: ``MimicConfig`` (one comment per field), ``solve`` (random restarts and divergence retries
around one run), ``_alternate`` (one run: the warm start, then Algorithm 1's loop), ``_Run`` (the state of one run
and its two kinds of step), ``best_of`` (the one mechanism that runs several starts and keeps one).

Shapes: observations ``y`` are (S, B, C_obs, H, W) in [-1, 1], S groups of B; latent codes ``z`` (S, B, nz) in the
box [-1, 1]^nz; ``G(z)`` (S, B, C, H, W) in [-1, 1]; ``valid`` (S, B) marks real images (1) vs padding (0) in a short
group. Every group has its own surrogate f (``mimic.surrogate``); the observation fit is ``mimic.fidelity``.

Algorithm 1 (MimicGAN), as run here::

    z <- z0 (the mean of 1000 draws of U(-1, 1)^nz), for every observation
    f <- the surrogate (identity-started "gated" by default)
    warm start: warm_steps projected RMSProp steps on z through the initial f     (not in the paper; see below)
    for t in 1..T:
        T1 RMSProp steps on f's weights, x = G(z) fixed:  L_obs + lam_I ||f(x) - x||_1
        T2 RMSProp steps on z, each followed by z <- clip(z, -1, 1):  L_obs + lam_adv L_adv + lam_I L_I
    generator adaptation: adapt_steps Adam steps on a per-group copy of G's weights and z, f fixed     (addition)
    do no harm: x <- x + w (y - x), w = e_x^4 / (e_x^4 + e_y^4) per group, e_y y's estimated damage (addition)
    return x

PGD is the same loop with f = identity and lam_I = 0 (``method="pgd"``); the oracle is PGD through a known
operator or with known pixel weights. The project's additions, each named where ``_alternate`` calls it and off
unless its field turns it on (evidence for every default: docs/DEFAULTS.md):

- warm start (``warm_steps``, ``lr_warm``): z first fits y through the identity-started f;
- candidate surrogate starts (``inits``): every group also tries the negated colour path, and after
  ``select_after`` warm steps keeps the candidate with the lower L_obs;
- the observation fit's parts (``obs_norm``, ``fill``, ``clip``, ``robust*``): ``mimic.fidelity``;
- random restarts (``restarts``): every image R times, the copy with the lowest L_obs kept;
- divergence retries: a group whose L_obs blows up is run again with half the step;
- generator adaptation (``adapt_steps``, ``lr_adapt``): after the alternation, every group gets
  its own copy of G's weights, adapted with z through the fixed surrogate (IAGAN's fine-tuning, blind); the groups'
  copies are stacked and run at once (``torch.func.vmap``); with ``adapt_check`` held-out pixels choose each image's
  step (a stopping rule against fitting noise);
- do no harm (``no_harm``): the output moves towards the observation by how the group's estimated damage
  compares with the error its recoveries are trusted to have (mild damage comes back about as it came in);
- the keep-observed post-step (``keep_observed``, ``keep_tv``): ``mimic.imageops.keep_observed``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from .fidelity import Fidelity
from .groupstats import GroupStats
from .imageops import keep_observed, noise_sigma
from .surrogate import BatchedSurrogate, get_surrogate, list_surrogates

__all__ = ["MimicConfig", "SolveOutput", "best_of", "solve", "z_init"]

RMS_ALPHA = 0.9  # RMSProp decay of the squared-gradient average (TensorFlow's default, as the paper's code)
RMS_EPS = 1e-8  # RMSProp epsilon
CANDIDATES = ("identity", "negated")  # the gated surrogate's candidate starts of its colour path
ADAPT_BETAS = (0.9, 0.999)  # Adam's decays in the generator adaptation (IAGAN's optimiser)
ADAPT_CHECK_EVERY = 10  # with ``adapt_check``: steps between two measures of the held-out fit
ADAPT_REPORTS = 4  # the history and the callback see the adaptation this many times (t = T + 1 .. T + 4)
NO_HARM_POWER = 4  # do no harm: w = e_x^p / (e_x^p + e_y^p), sharper than the odds (p = 1)
NO_HARM_UNEXPLAINED = 0.5  # do no harm: the share of what f(x) leaves unexplained of y that counts against x


@dataclass(frozen=True)
class MimicConfig:
    # --- loss weights (the paper's Table 1) ---
    lam_adv: float = 0.0  # weight of L_adv = log(1 - D(G(z))) = -softplus(D's logit)
    lam_I: float = 0.0  # weight of the identity loss L_I = ||y - G(z)||_1 + ||f(G(z)) - G(z)||_1
    lam_group: float = 0.0  # weight of the group term (blind only; mimic.groupstats): per group, n x the part of
    #   the distance of its recoveries' colour statistics from the prior's training faces that sampling n faces
    #   does not explain; what the whole group shares (a cast, a veil, a tone curve) goes to the surrogate
    # --- learning rates (RMSProp) ---
    lr_s: float = 2e-4  # gamma_s: surrogate weights
    lr_g: float = 1e-3  # gamma_g: latent codes in the alternation
    lr_warm: float = 1e-2  # latent codes in the warm start
    # --- schedule (not published by the paper; chosen on validation faces) ---
    warm_steps: int = 200  # latent steps through the initial surrogate before the alternation
    select_after: int = 50  # warm steps after which each group keeps its best candidate start
    select_margin: float = 0.85  # a candidate start other than the first is kept only when its L_obs is below
    #   select_margin x the first's: an inversion explains its observations far better negated (0.69x), while a
    #   channel swap or colour change may be explained slightly better by a negated face (0.94x) that is wrong
    T: int = 10  # outer iterations of the alternation
    T1: int = 25  # surrogate steps per outer iteration
    T2: int = 20  # latent steps per outer iteration
    # --- surrogate ---
    surrogate: str = "gated"  # a kind of mimic.surrogate: "gated" (identity-started), "paper", "fmnist", "identity"
    inits: tuple = CANDIDATES  # gated only: candidate starts of its colour path ("identity", "negated"); intensity
    #   inversion is a common corruption that an identity start cannot reach with small steps
    restarts: int = 1  # random restarts: starts per image (the first at z0, the others U(-1, 1)); lowest L_obs kept
    # --- the observation fit (mimic.fidelity) ---
    obs_norm: str = "l1"  # "l1" (paper) or "l2": the blind fit's penalty of y - f(x) (L2 fits the mean, for
    #   corruptions that destroy most pixels, where the L1 fit, the median, is uninformative)
    fill: bool = False  # leave pixels written with a constant fill value (detected per observation) out of the fit
    clip: bool = False  # pixels piled up at an observation channel's own max (min) level only bound the fit
    robust: float = 0.0  # 0 = off; else the latent fit's per-pixel weights min(1, (robust * median r / r)^power),
    #   r = the residual the group shares at that pixel: what the surrogate cannot explain for the whole group
    #   (stuck columns, occluders) stops steering z
    robust_power: float = 4.0  # sharpness of the robust weights
    robust_stat: str = "abs"  # r = the group's median |y - f(G(z))| ("abs") or |median of y - f(G(z))| ("signed":
    #   what every image shares, while the prior's own errors, of either sign from face to face, cancel)
    robust_smooth: int = 1  # box filter size over r before weighting (corruptions are spatially coherent)
    robust_at: int = 0  # warm step of the first robust weights (0: at the candidate choice, ``select_after``)
    robust_rewind: bool = False  # z goes back to its start once the first robust weights are known
    robust_keep: bool = False  # a robust weight never rises again once lowered
    # --- output post-step (mimic.imageops.keep_observed) ---
    keep_observed: bool = False  # with ``fill``: an observation with fill keeps its observed pixels (G(z) blended into
    #   the missing ones); one without gets G(z) plus its TV-denoised residual. Assumes the corruption only removed
    #   pixels or added noise: off by default
    keep_tv: float = 0.7  # with ``keep_observed``: the residual's TV weight, in units of its estimated noise sigma
    no_harm: float = 0.0  # do no harm (0 = off): the error (a mean square on [-1, 1]) a recovery is trusted to have;
    #   the outputs move towards the observations by how the group's estimated damage (f's change of x, y's noise,
    #   what f(x) leaves unexplained) compares with it (blind, observations with the recovery's channels)
    # --- generator adaptation (after the alternation; IAGAN, Abu Hussein et al. 2020, made blind) ---
    adapt_steps: int = 0  # Adam steps on a per-group copy of G's weights and on z after the alternation, the
    #   surrogate fixed (0 = off): recoveries leave G's range, which caps every other part at the prior's projection
    lr_adapt: float = 1e-4  # Adam step of the adapted weights and z
    adapt_check: float = 0.0  # the share of pixels held out of the adaptation's fit (0 = off): every
    #   ``ADAPT_CHECK_EVERY`` steps each image's fit to its held-out pixels is measured, and each image keeps the step
    #   (from 0, before any) where it was lowest: the adaptation stops, per image, where G starts fitting what the
    #   held-out pixels do not share (noise, the surrogate's errors)

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"MimicConfig.{name} {why}, got {getattr(self, name)!r}")

        for n in ("lam_adv", "lam_I", "lam_group", "robust", "keep_tv", "no_harm"):
            v = getattr(self, n)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                bad(n, "must be a finite number >= 0")
        if not (isinstance(self.adapt_check, (int, float)) and 0 <= self.adapt_check < 1):
            bad("adapt_check", "must be a number in [0, 1)")
        if not (isinstance(self.select_margin, (int, float)) and 0 < self.select_margin <= 1):
            bad("select_margin", "must be a number in (0, 1]")
        for n in ("lr_s", "lr_g", "lr_warm", "robust_power", "lr_adapt"):
            v = getattr(self, n)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                bad(n, "must be a finite number > 0")
        for n in ("warm_steps", "select_after", "T", "T1", "T2", "robust_at", "adapt_steps"):
            v = getattr(self, n)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                bad(n, "must be an integer >= 0")
        for n in ("restarts", "robust_smooth"):
            v = getattr(self, n)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
                bad(n, "must be an integer >= 1")
        if self.surrogate not in list_surrogates():
            bad("surrogate", f"must be one of {', '.join(list_surrogates())}")
        if not self.inits or set(self.inits) - set(CANDIDATES) or len(set(self.inits)) != len(self.inits):
            bad("inits", f"must be distinct values of {CANDIDATES}")
        if self.obs_norm not in ("l1", "l2"):
            bad("obs_norm", "must be 'l1' or 'l2'")
        if self.robust_stat not in ("abs", "signed"):
            bad("robust_stat", "must be 'abs' or 'signed'")
        if self.keep_observed and not self.fill:
            raise ValueError("MimicConfig.keep_observed needs fill=True (the observed pixels are those not detected "
                             "as fill)")

    def latent_steps(self) -> int:
        """Total latent steps (PGD gets the same number)."""
        return self.warm_steps + self.T * self.T2

    def replace(self, **kw) -> "MimicConfig":
        unknown = set(kw) - set(asdict(self))
        if unknown:
            raise TypeError(f"unknown MimicConfig field(s) {sorted(unknown)}; valid: {sorted(asdict(self))}")
        return replace(self, **kw)


@dataclass
class SolveOutput:
    """What ``solve`` returns (tensors on the solve's device unless noted).

    x : (S, B, C, H, W) recovered images in [-1, 1] (G(z) with G adapted when ``adapt_steps``, then after the
        do-no-harm and keep-observed post-steps when on)
    fx : (S, B, C_obs, H, W) the surrogate's imitation f(G(z)), G the prior's own generator (before any adaptation:
        how far the prior's range explains the observation)
    z : (S, B, nz) latent codes in [-1, 1]
    obs_loss : (S, B) final per-image L_obs
    surrogate : the trained BatchedSurrogate (S groups)
    history : dict name -> (T+1 [+4], S) CPU tensor of group means per outer iteration (0 = after the warm start;
        with ``adapt_steps``, four more rows, after each quarter of the generator adaptation)
    lr_scale : (S,) step scale each group ended with (< 1 after a divergence retry)
    retried : list of group indices that diverged and were run again with a smaller step
    init : list of str, per group the surrogate start it kept ("identity", "negated", or the kind)
    fill : (S, B) fraction of each observation's values detected as fill and left out (``cfg.fill``), or None
    observed_weight : (S, B) the observation's share w of each output x + w (y - x) (``cfg.no_harm``), or None
    adapt_kept : (S, B) the adaptation step each image kept (``cfg.adapt_check``; 0 = before any), or None
    """

    x: torch.Tensor
    fx: torch.Tensor
    z: torch.Tensor
    obs_loss: torch.Tensor
    surrogate: BatchedSurrogate
    history: dict
    lr_scale: torch.Tensor
    retried: list = field(default_factory=list)
    init: list = field(default_factory=list)
    fill: torch.Tensor | None = None
    observed_weight: torch.Tensor | None = None
    adapt_kept: torch.Tensor | None = None


def z_init(nz: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """z0: the mean of 1000 draws of U(-1, 1)^nz (the paper's), shape (nz,). Seeded (0) when no generator is given."""
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return (torch.rand(1000, nz, generator=generator) * 2 - 1).mean(0)


def rmsprop_step(params, grads, states, lr: float, scale: torch.Tensor) -> None:
    """In-place RMSProp on batched parameters whose first axis is the group axis S; ``scale`` (S,) multiplies the
    step of each group (divergence retries halve it). No host syncs."""
    for p, g, v in zip(params, grads, states):
        v.mul_(RMS_ALPHA).addcmul_(g, g, value=1 - RMS_ALPHA)
        s = scale.view(-1, *([1] * (p.ndim - 1)))
        p.addcdiv_(g * s, v.sqrt().add_(RMS_EPS), value=-lr)


def adam_step(params, grads, state, lr: float, scale: torch.Tensor) -> None:
    """In-place Adam on batched parameters whose first axis is the group axis S (``state``: first and second
    moments and the step count); ``scale`` (S,) multiplies the step of each group. No host syncs."""
    m, v, t = state
    t[0] += 1
    b1, b2 = ADAPT_BETAS
    c1, c2 = 1 - b1 ** t[0], 1 - b2 ** t[0]
    for p, g, m_, v_ in zip(params, grads, m, v):
        m_.mul_(b1).add_(g, alpha=1 - b1)
        v_.mul_(b2).addcmul_(g, g, value=1 - b2)
        s = scale.view(-1, *([1] * (p.ndim - 1)))
        p.sub_((m_ / c1) * s / ((v_ / c2).sqrt() + RMS_EPS) * lr)


def best_of(score: torch.Tensor, copies: int) -> torch.Tensor:
    """The lowest-scoring of ``copies`` copies of every item: ``score`` (..., copies * n), copy k of item i at
    k * n + i, -> indices (..., n) into the last axis. Random restarts (copies of images along the batch axis) and
    candidate starts (copies of groups along the group axis) both keep their winners with it."""
    *lead, kn = score.shape
    n = kn // copies
    best = score.reshape(*lead, copies, n).argmin(-2)  # (..., copies * n) -> (..., copies, n) -> (..., n)
    return best * n + torch.arange(n, device=score.device)


def solve(G, D, y: torch.Tensor, cfg: MimicConfig, *, method: str = "mimic", valid: torch.Tensor | None = None,
          generator: torch.Generator | None = None, callback: Callable | None = None,
          operator: Callable | None = None, weight: torch.Tensor | None = None, stats: GroupStats | None = None,
          max_retries: int = 3) -> SolveOutput:
    """Recover S groups of B observations at once.

    Parameters
    ----------
    G, D : nn.Module
        Frozen generator (z (N, nz) -> (N, C, H, W); attributes ``nz``, ``nc``) and discriminator (-> logits (N,)),
        eval mode.
    y : torch.Tensor
        (S, B, C_obs, H, W) float32 observations in [-1, 1]; the device of ``y`` is the device of the solve.
    cfg : MimicConfig
    method : {"mimic", "pgd"}
        ``pgd`` fixes f to the identity (or to ``operator``) and lam_I to 0.
    valid : torch.Tensor, optional
        (S, B), 1 for real observations, 0 for padding.
    generator : torch.Generator, optional
        CPU generator for z's starts and the surrogate's initialisation.
    callback : callable(t, x, fx, history), optional
        Called after the warm start (t = 0) and each outer iteration with detached tensors.
    operator : callable, optional
        Not blind (the oracle): with ``method="pgd"``, f is this known operator (N, C, H, W) -> (N, C_obs, H, W).
    weight : torch.Tensor, optional
        Not blind (the oracle): per-pixel weights of L_obs broadcastable to y (1 observed, 0 destroyed).
    stats : GroupStats, optional
        The prior's reference statistics (``Prior.group_stats``); needed when ``cfg.lam_group`` > 0 (blind only).
    max_retries : int
        Divergence retries per group.
    """
    if method not in ("mimic", "pgd"):
        raise ValueError(f"unknown method {method!r}; valid: mimic, pgd")
    if operator is not None and method != "pgd":
        raise ValueError("a known operator is only used with method='pgd' (the oracle)")
    if cfg.lam_group and method == "mimic" and stats is None:
        raise ValueError("MimicConfig.lam_group > 0 needs the prior's group statistics (solve(..., stats=); a prior "
                         "folder without group_stats.json has none)")
    S, B = y.shape[:2]
    R = cfg.restarts
    if R > 1:
        # random restarts: every observation R times along the batch axis (copy r of image b at r * B + b); the
        # first copy starts at z0, the others at U(-1, 1); each image keeps its copy with the lowest L_obs
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        z_start = torch.cat([z_init(G.nz, g).expand(S, B, G.nz),
                             torch.rand(S, (R - 1) * B, G.nz, generator=g) * 2 - 1], dim=1).to(y.device)
        if weight is not None and weight.ndim == 5 and weight.shape[1] == B:
            weight = weight.repeat(1, R, 1, 1, 1)
        out = _retrying(G, D, y.repeat(1, R, 1, 1, 1), cfg, method, None if valid is None else valid.repeat(1, R),
                        generator, callback, operator, weight, stats, max_retries, z_start)
        idx = best_of(out.obs_loss, R).to(out.x.device)  # (S, B) index into the R * B copies

        def pick(t):
            return torch.gather(t, 1, idx.view(S, B, *([1] * (t.ndim - 2))).expand(S, B, *t.shape[2:]))

        out.x, out.fx, out.z, out.obs_loss = pick(out.x), pick(out.fx), pick(out.z), pick(out.obs_loss)
        out.fill = None if out.fill is None else pick(out.fill)
        out.observed_weight = None if out.observed_weight is None else pick(out.observed_weight)
        out.adapt_kept = None if out.adapt_kept is None else pick(out.adapt_kept)
        return out
    return _retrying(G, D, y, cfg, method, valid, generator, callback, operator, weight, stats, max_retries, None)


def _retrying(G, D, y, cfg, method, valid, generator, callback, operator, weight, stats, max_retries, z_start):
    """One run of every group; the groups that diverged run again with half their step (divergence retries)."""
    with torch.enable_grad():
        run = dict(G=G, D=D, cfg=cfg, pgd=method == "pgd", generator=generator, operator=operator, stats=stats)
        out = _alternate(y=y, valid=valid, callback=callback, weight=weight, z_start=z_start,
                         lr_scale=torch.ones(y.shape[0], device=y.device), **run)
        retried = []
        bad = _diverged(out)
        for _ in range(max_retries):
            if not bad.numel():
                break
            retried = sorted(set(retried) | set(bad.tolist()))
            per_group = weight is not None and weight.shape[0] == y.shape[0]
            sub = _alternate(y=y[bad], valid=None if valid is None else valid[bad], callback=None,
                             weight=weight[bad] if per_group else weight, lr_scale=out.lr_scale[bad] * 0.5,
                             z_start=None if z_start is None else z_start[bad.to(z_start.device)], **run)
            _merge(out, sub, bad)
            bad = _diverged(out)
        out.retried = retried
        return out


def _alternate(*, G, D, y, cfg, pgd, valid, generator, callback, operator, weight, lr_scale, z_start, stats):
    """One run of the S groups: the warm start, then Algorithm 1's alternation."""
    S0, B, cobs, H, W = y.shape
    K = len(cfg.inits) if not pgd and cfg.surrogate == "gated" else 1
    run = _Run(G, D, y, cfg, pgd=pgd, valid=valid, generator=generator, operator=operator, weight=weight,
               lr_scale=lr_scale, z_start=z_start, candidates=K, stats=stats)

    # --- warm start (addition): latent steps through the initial surrogate ---
    n_select = min(cfg.select_after, cfg.warm_steps) if K > 1 else cfg.warm_steps
    n_robust = min(max(cfg.robust_at, n_select), cfg.warm_steps) if run.fit.use_robust else n_select
    run.latent_steps(n_select, cfg.lr_warm)
    if K > 1:  # candidate starts (addition): each group keeps the candidate with the lowest L_obs
        run.keep_best_candidate()
    run.group_on = bool(run.lam_group)  # the group term (addition): from here on
    run.latent_steps(n_robust - n_select, cfg.lr_warm)
    if run.fit.use_robust:  # robust weights (addition): the first ones, from the warm start's fit
        with torch.no_grad():
            run.fit.update_robust(run.f(run.gen()))
            if cfg.robust_rewind:
                run.rewind()
    run.latent_steps(cfg.warm_steps - n_robust, cfg.lr_warm)
    x, fx, l_obs = run.evaluate()
    if callback is not None:
        callback(0, x, fx, run.hist)

    # --- Algorithm 1 ---
    for t in range(1, cfg.T + 1):
        x_fixed = x.detach()
        for _ in range(cfg.T1 if run.s_params else 0):  # T1 surrogate steps, x = G(z) fixed
            run.surrogate_step(x_fixed)
        if run.fit.use_robust:  # robust weights (addition): renewed from the new surrogate's fit
            with torch.no_grad():
                run.fit.update_robust(run.f(x_fixed), keep_lowest=cfg.robust_keep)
        for _ in range(cfg.T2):  # T2 projected latent steps
            run.latent_step(cfg.lr_g)
        x, fx, l_obs = run.evaluate()
        if callback is not None:
            callback(t, x, fx, run.hist)

    # --- generator adaptation (addition): G leaves its range, the surrogate fixed ---
    fx_range = fx  # f(G(z)) of the prior's own G: what its range explains (the out-of-prior score reads it)
    adapt_kept = None
    if cfg.adapt_steps:
        run.start_adapting(generator)
        chunks, step = min(ADAPT_REPORTS, cfg.adapt_steps), 0
        for j in range(1, chunks + 1):
            for _ in range(cfg.adapt_steps * j // chunks - cfg.adapt_steps * (j - 1) // chunks):
                run.adapt_step(cfg.lr_adapt)
                step += 1
                if run.check is not None and (step % ADAPT_CHECK_EVERY == 0 or step == cfg.adapt_steps):
                    run.keep_checked(step)
            x, fx, l_obs = run.evaluate()
            if callback is not None:
                callback(cfg.T + j, x, fx, run.hist)
        if run.check is not None:  # held-out pixels (addition): each image's step with the best held-out fit
            x, adapt_kept = run.kept_x, run.kept_step
            with torch.no_grad():
                l_obs = run.fit.obs(run.f(x))

    observed_weight = None
    if cfg.no_harm and not pgd and cobs == G.nc:  # do no harm (addition)
        x, observed_weight = run.no_harm(x)
    if cfg.keep_observed and cobs == G.nc:  # keep-observed post-step (addition)
        x = keep_observed(x, run.fit.y, run.fit.fill, tv=cfg.keep_tv)
    return SolveOutput(x=x.detach(), fx=fx_range.detach(), z=run.z.detach(), obs_loss=l_obs.detach(),
                       surrogate=run.surrogate, history={k: torch.stack(v).cpu() for k, v in run.hist.items()},
                       lr_scale=run.lr_scale.clone(), init=run.init_names(), fill=run.fit.fill_fraction(),
                       observed_weight=observed_weight, adapt_kept=adapt_kept)


class _Run:
    """The state of one run (z, the surrogate, their optimiser states, the observation fit) and its steps.

    With K candidate starts, group s's candidate k sits at k * S + s on the group axis until
    ``keep_best_candidate`` keeps one per group.
    """

    def __init__(self, G, D, y, cfg, *, pgd, valid, generator, operator, weight, lr_scale, z_start, candidates,
                 stats=None):
        S0, B, cobs, H, W = y.shape
        K, dev = candidates, y.device
        self.G, self.D, self.cfg, self.pgd, self.operator, self.K = G, D, cfg, pgd, operator, K
        self.lam_I = 0.0 if pgd else cfg.lam_I  # PGD and the oracle have no identity loss
        self.lam_group = 0.0 if pgd else cfg.lam_group  # nor a group term
        self.stats = None if stats is None else stats.to(dev)
        self.group_on = False  # the group term acts from the candidate choice on (``switch_group_on``)
        valid = torch.ones(S0, B, device=dev) if valid is None else valid.to(device=dev, dtype=y.dtype)
        self.S, self.shape = K * S0, (B, cobs, H, W)
        self.valid, self.lr_scale = valid.repeat(K, 1), lr_scale.repeat(K)
        self.fit = Fidelity(y.repeat(K, 1, 1, 1, 1), cfg, self.valid, blind=not pgd, known=weight)
        # z: every observation starts at z0 (the paper's initialisation) or at the given start
        self.z0 = z_init(G.nz, generator).to(dev).expand(S0, B, G.nz) if z_start is None else z_start.to(dev)
        self.z = self.z0.repeat(K, 1, 1).clone().requires_grad_(True)  # (K*S0, B, nz)
        self.z_state = torch.zeros_like(self.z)
        kind = "identity" if pgd else cfg.surrogate
        self.surrogate = get_surrogate(kind, groups=self.S, in_channels=G.nc, out_channels=cobs, size=H,
                                       generator=generator).to(dev)
        self.negated = torch.tensor([cfg.inits[k] == "negated" for k in range(K) for _ in range(S0)], device=dev)
        if kind == "gated":
            self.surrogate.negate(self.negated)
        self.s_params = list(self.surrogate.parameters())
        self.s_states = [torch.zeros_like(p) for p in self.s_params]
        self.chosen = torch.zeros(S0, dtype=torch.long)  # per group, the index of the candidate start it kept
        self.hist = {k: [] for k in ("obs", "adv", "ident", "total")}
        if self.lam_group:
            self.hist["group"] = []  # the group term's excess distance (per group)
        self.g_params = None  # per-group copies of G's weights once the adaptation starts (``start_adapting``)
        self.check = None  # with ``adapt_check``: (S, B, 1, H, W) 1 at the pixels held out of the adaptation's fit

    # --- the model: x = G(z), f(x), the losses ---
    def gen(self) -> torch.Tensor:
        B, _, H, W = self.shape
        if self.g_params is not None:  # adapted: group s's own copy of G's weights; (S, B, nz) -> (S, B, C, H, W)
            return vmap(self._g_call)(self.g_params, self.z)
        return self.G(self.z.reshape(self.S * B, -1)).reshape(self.S, B, self.G.nc, H, W)  # (S*B, C, H, W) -> (S, B, ...)

    def _g_call(self, params, z):
        return functional_call(self.G, (params, self.g_buffers), (z,))

    def f(self, x: torch.Tensor) -> torch.Tensor:
        if self.operator is None:
            return self.surrogate(x)
        B, cobs, H, W = self.shape
        return self.operator(x.reshape(self.S * B, self.G.nc, H, W)).reshape(self.S, B, cobs, H, W)

    def losses(self, x, fx, logits):
        """Per-image (S, B) L_obs, L_adv and L_I."""
        l_obs = self.fit.obs(fx)
        l_adv = -F.softplus(logits) if logits is not None else torch.zeros_like(l_obs)
        l_id = self.fit.ident(x, fx) if self.lam_I else torch.zeros_like(l_obs)
        return l_obs, l_adv, l_id

    def logits(self, x):
        B, _, H, W = self.shape
        return self.D(x.reshape(self.S * B, self.G.nc, H, W)).reshape(self.S, B)

    def total(self, l_obs, l_adv, l_id):
        return l_obs + self.cfg.lam_adv * l_adv + self.lam_I * l_id

    # --- the two kinds of step ---
    def latent_step(self, lr: float) -> None:
        """One projected RMSProp step on z: L_obs + lam_adv L_adv + lam_I L_I, then z <- clip(z, -1, 1)."""
        x = self.gen()
        fx = self.f(x)
        loss = (self.total(*self.losses(x, fx, self.logits(x) if self.cfg.lam_adv else None)) * self.valid).sum()
        if self.group_on:  # the group term (addition): n x the group's excess distance, per group
            loss = loss + self.lam_group * (self.valid.sum(1) * self.stats.excess(x, self.valid)).sum()
        (g,) = torch.autograd.grad(loss, [self.z])
        with torch.no_grad():
            rmsprop_step([self.z], [g], [self.z_state], lr, self.lr_scale)
            self.z.clamp_(-1.0, 1.0)  # the projection onto the box, in place on the parameter

    def latent_steps(self, n: int, lr: float) -> None:
        for _ in range(n):
            self.latent_step(lr)

    def surrogate_step(self, x: torch.Tensor) -> None:
        """One RMSProp step on the surrogate's weights, x = G(z) fixed: L_obs + lam_I ||f(x) - x||_1."""
        fx = self.surrogate(x)
        loss = self.fit.obs_surrogate(fx)
        if self.lam_I:
            loss = loss + self.lam_I * (fx - x).abs().mean(dim=(2, 3, 4))
        grads = torch.autograd.grad((loss * self.valid).sum(), self.s_params)
        with torch.no_grad():
            rmsprop_step(self.s_params, grads, self.s_states, self.cfg.lr_s, self.lr_scale)

    @torch.no_grad()
    def evaluate(self):
        """G(z), f(G(z)) and L_obs now; the group means of every loss go to the history."""
        x = self.gen()
        fx = self.f(x)
        l_obs, l_adv, l_id = self.losses(x, fx, self.logits(x))
        w = self.valid / self.valid.sum(1, keepdim=True).clamp(min=1)
        for k, v in (("obs", l_obs), ("adv", l_adv), ("ident", l_id), ("total", self.total(l_obs, l_adv, l_id))):
            self.hist[k].append((v * w).sum(1).detach())
        if self.lam_group:
            self.hist["group"].append(self.stats.excess(x, self.valid).detach())
        return x, fx, l_obs

    def start_adapting(self, generator: torch.Generator | None = None) -> None:
        """Per-group copies of G's weights (stacked on a leading group axis S) and fresh Adam states for them and z;
        with ``adapt_check``, the held-out pixels (drawn from ``generator``) and the images before any step."""
        if self.cfg.adapt_check:
            B, _, H, W = self.shape
            g = generator if generator is not None else torch.Generator().manual_seed(0)
            u = torch.rand(self.S, B, 1, H, W, generator=g).to(self.z.device)  # one draw per pixel, all channels
            self.check = (u < self.cfg.adapt_check).to(self.fit.y.dtype)
            self.fitted = 1 - self.check  # the pixels the adaptation fits
            self.kept_x = self.gen().detach()
            self.kept_step = torch.zeros(self.S, B, dtype=torch.long, device=self.z.device)
            self.kept_loss = self.fit.obs(self.f(self.kept_x), self.check)  # (S, B)
        self.g_buffers = {k: b for k, b in self.G.named_buffers()}
        self.g_params = {k: p.detach().expand(self.S, *p.shape).clone().requires_grad_(True)
                         for k, p in self.G.named_parameters()}
        self.z = self.z.detach().clone().requires_grad_(True)
        params = [self.z, *self.g_params.values()]
        self.adam = ([torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params], [0])

    def adapt_step(self, lr: float) -> None:
        """One Adam step on G's per-group weights and z: L_obs + lam_adv L_adv (+ the group term), the surrogate
        fixed; then z <- clip(z, -1, 1). The guard against G learning the corruption itself is the step count. The
        identity loss is left out: its pull of G(z) towards y is what an adapting G must not follow."""
        x = self.gen()
        fx = self.f(x)
        l_obs = self.fit.obs(fx, None if self.check is None else self.fitted)  # without the held-out pixels
        l_adv = -F.softplus(self.logits(x)) if self.cfg.lam_adv else torch.zeros_like(l_obs)
        loss = ((l_obs + self.cfg.lam_adv * l_adv) * self.valid).sum()
        if self.group_on:
            loss = loss + self.lam_group * (self.valid.sum(1) * self.stats.excess(x, self.valid)).sum()
        params = [self.z, *self.g_params.values()]
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            adam_step(params, grads, self.adam, lr, self.lr_scale)
            self.z.clamp_(-1.0, 1.0)

    @torch.no_grad()
    def keep_checked(self, step: int) -> None:
        """Held-out pixels: every image whose fit to its held-out pixels is the lowest so far keeps its G(z) now."""
        x = self.gen()
        loss = self.fit.obs(self.f(x), self.check)  # (S, B)
        better = loss < self.kept_loss
        self.kept_loss = torch.where(better, loss, self.kept_loss)
        self.kept_x = torch.where(better[..., None, None, None], x, self.kept_x)
        self.kept_step = torch.where(better, step, self.kept_step)

    @torch.no_grad()
    def no_harm(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + w (y - x), w (S, B)), w = e_x^p / (e_x^p + e_y^p) (p = ``NO_HARM_POWER``), one w per group: the medians over the
        group's valid images of e_y, the observation's estimated damage, and e_x, the recovery's estimated error.
        e_y = |f(x) - x|^2 (what the surrogate says the corruption changes) + sigma^2 (y's white noise,
        ``noise_sigma``) + u, u what f(x) leaves unexplained of y beyond that noise; e_x = ``cfg.no_harm`` (the error
        a recovery is trusted to have) + ``NO_HARM_UNEXPLAINED`` u (a fit that misses y is itself suspect). Means
        over pixels, on [-1, 1]. Mild damage (e_y << e_x) returns about y, strong damage about x. The group shares
        one corruption, so its median is a steadier estimate than any one image's (docs/DEFAULTS.md)."""
        y, fx = self.fit.y, self.f(x)
        S, B = y.shape[:2]
        sig2 = noise_sigma(y.reshape(S * B, *y.shape[2:])).square().view(S, B)  # (S*B,) -> (S, B)
        unexplained = ((y - fx).square().mean(dim=(2, 3, 4)) - sig2).clamp(min=0)  # (S, B)
        e_y = (fx - x).square().mean(dim=(2, 3, 4)) + sig2 + unexplained  # (S, B)
        e_x = self.cfg.no_harm + NO_HARM_UNEXPLAINED * unexplained

        def group_median(v):  # (S, B) -> (S, 1), over the valid images
            return torch.where(self.valid > 0, v, float("nan")).nanmedian(dim=1, keepdim=True).values

        ratio = (group_median(e_y) / group_median(e_x)).nan_to_num(0.0)  # a group with no valid image keeps y
        w = (1.0 / (1.0 + ratio ** NO_HARM_POWER)).expand(S, B)  # = e_x^p / (e_x^p + e_y^p)
        return x + w[..., None, None, None] * (y - x), w

    # --- the additions that change the state ---
    @torch.no_grad()
    def keep_best_candidate(self) -> None:
        """Candidate starts: each group keeps the candidate whose L_obs (the valid images' mean) is lowest, a
        candidate other than the first only when it is lower by the margin ``select_margin``."""
        S0 = self.S // self.K
        l_obs = self.fit.obs(self.f(self.gen()))  # (K*S0, B)
        score = (l_obs * self.valid).sum(1) / self.valid.sum(1).clamp(min=1)  # (K*S0,), candidate k at k*S0 + s
        score = score / torch.where(torch.arange(self.S, device=score.device) < S0, 1.0, self.cfg.select_margin)
        idx = best_of(score, self.K)  # (S0,)
        self.S, self.chosen = S0, (idx // S0).cpu()
        self.valid, self.lr_scale, self.fit = self.valid[idx], self.lr_scale[idx], self.fit.select(idx)
        self.z = self.z.detach()[idx].clone().requires_grad_(True)
        self.z_state = self.z_state[idx].clone()
        self.surrogate = self.surrogate.select(idx)
        self.s_params = list(self.surrogate.parameters())
        self.s_states = [torch.zeros_like(p) for p in self.s_params]

    @torch.no_grad()
    def rewind(self) -> None:
        """z back to its start (``robust_rewind``), its optimiser state cleared."""
        self.z.copy_(self.z0)
        self.z_state.zero_()

    def init_names(self) -> list:
        if self.pgd:
            return ["identity"] * self.S
        if self.cfg.surrogate != "gated":
            return [self.cfg.surrogate] * self.S
        return [self.cfg.inits[int(k)] for k in self.chosen]


def _diverged(out: SolveOutput, blowup: float = 1.5) -> torch.Tensor:
    """Groups with non-finite results, or whose L_obs ended above ``blowup`` x its value after the warm start."""
    ok = torch.isfinite(out.x).flatten(1).all(1) & torch.isfinite(out.obs_loss).all(1)
    h = out.history["obs"]  # (T+1, S), CPU
    ok = ok.cpu() & ~(h[-1] > blowup * h[0])
    return (~ok).nonzero().flatten()


def _merge(out: SolveOutput, sub: SolveOutput, idx: torch.Tensor) -> None:
    """Put the retried groups ``idx`` of ``sub`` into ``out``."""
    for name in ("x", "fx", "z", "obs_loss", "lr_scale", "observed_weight", "adapt_kept"):
        if getattr(out, name) is not None:
            getattr(out, name)[idx.to(out.x.device)] = getattr(sub, name)
    for j, i in enumerate(idx.tolist()):
        out.init[i] = sub.init[j]
    with torch.no_grad():
        for (n, p), (_, q) in zip(out.surrogate.named_parameters(), sub.surrogate.named_parameters()):
            p[idx.to(p.device)] = q
    for k, v in out.history.items():
        v[:, idx] = sub.history[k]
