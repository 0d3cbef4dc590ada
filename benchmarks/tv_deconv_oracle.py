"""convolve_noise: TV deconvolution with the true box filter (not blind), the reference for docs/TUNING.md Open.

    python benchmarks/tv_deconv_oracle.py

Validation faces 0-24, l 3, sigma 0.15: argmin_x ||B x - y||^2 / 2 + lam TV_eps(x) by 400 Adam steps from TV(y), for
four lam; prints lam and the MSE on [-1, 1]."""
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from mimic.corruptions import get_corruption
from mimic.engine import denoise_tv, noise_sigma
from mimic.io import to_tensor, to_uint8
from tune import val_faces
torch.set_num_threads(2)
clean = to_tensor(val_faces(25, 0))
mse = lambda a: float(((a.clamp(-1, 1) - clean) ** 2).mean())
l, sigma = 3, 0.15
k_ = torch.full((3, 1, l, l), 1.0 / l**2)
B = lambda x: F.conv2d(x, k_, padding=l // 2, groups=3)
y = to_tensor(to_uint8(get_corruption("convolve_noise", l=l, sigma=sigma)(clean, generator=torch.Generator().manual_seed(0))))
def tv(x, eps=1e-3):
    dx = x[..., :, 1:] - x[..., :, :-1]; dy = x[..., 1:, :] - x[..., :-1, :]
    return (dx[..., :-1, :] ** 2 + dy[..., :, :-1] ** 2 + eps).sqrt().sum() / x.shape[0]
for lam in (0.02, 0.05, 0.1, 0.2):
    x = denoise_tv(y, 0.7 * noise_sigma(y)).clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.01)
    for i in range(400):
        loss = ((B(x) - y) ** 2).sum() / x.shape[0] / 2 + lam * tv(x)
        opt.zero_grad(); loss.backward(); opt.step()
    print(lam, round(mse(x.detach()), 5), flush=True)
