"""L_I with its surrogate term only, |f(G(z)) - G(z)| (no |y - G(z)| pull), on the Fashion-MNIST tasks (docs/TUNING.md
Open): ``benchmarks/tune_fmnist.py`` with ``mimic.engine.losses`` replaced for the run; same arguments.

    python benchmarks/ident_surrogate.py --task clean --task attack:deepfool --task attack:fgsm --task attack:bim \
        --n 100 --no-pgd --variant 'lam_I=1.0'
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import mimic.engine as engine  # noqa: E402
from tune_fmnist import main  # noqa: E402

_losses = engine.losses


def losses_surrogate_pull(y, x, fx, logits, cfg, obs=engine._obs_l1, keep=None, clip=None):
    l_obs, l_adv, _ = _losses(y, x, fx, logits, cfg.replace(lam_I=0.0), obs, keep, clip)
    l_id = (fx - x).abs().mean(dim=(2, 3, 4)) if cfg.lam_I else torch.zeros_like(l_obs)  # (S, B)
    return l_obs, l_adv, l_id


if __name__ == "__main__":
    engine.losses = losses_surrogate_pull
    main()
