import pytest
import torch

from mimic.surrogate import BatchedSurrogate, get_surrogate, list_surrogates


def make(kind, S, cin, cout, size, generator=None):
    return get_surrogate(kind, groups=S, in_channels=cin, out_channels=cout, size=size, generator=generator)


def _x(S=3, B=4, C=3, H=16, g=0):
    return torch.rand(S, B, C, H, H, generator=torch.Generator().manual_seed(g)) * 2 - 1


@pytest.mark.parametrize("kind", list_surrogates())
@pytest.mark.parametrize("cobs", [1, 3])
def test_shapes(kind, cobs, device):
    f = make(kind, 3, 3, cobs, 16).to(device)
    x = _x().to(device)
    y = f(x)
    assert y.shape == ((3, 4, 3, 16, 16) if kind == "identity" else (3, 4, cobs, 16, 16))
    assert torch.isfinite(y).all()


def test_gated_starts_at_identity():
    f = make("gated", 3, 3, 3, 16)
    x = _x() * 0.9
    assert torch.allclose(f(x), x, atol=1e-6)
    f1 = make("gated", 2, 3, 1, 16)
    assert torch.allclose(f1(x[:2]), x[:2].mean(2, keepdim=True), atol=1e-6)


KINDS = [k for k in list_surrogates() if k != "identity"]


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_parameter(kind):
    f = make(kind, 2, 3, 3, 16, generator=torch.Generator().manual_seed(0))
    if kind == "gated":
        with torch.no_grad():
            f.w3.normal_(0, 0.01)
    x = _x(S=2) * 0.5
    (f(x) - _x(S=2, g=1)).abs().sum().backward()
    for n, p in f.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("kind", KINDS)
def test_groups_are_independent(kind):
    """Group s of a batched surrogate equals a one-group surrogate with group s's weights."""
    f = make(kind, 3, 3, 1, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in f.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = _x()
    y = f(x)
    for s in range(3):
        g = make(kind, 1, 3, 1, 16)
        g.load_state_dict({k: v[s : s + 1] for k, v in f.state_dict().items()})
        assert torch.allclose(g(x[s : s + 1]), y[s : s + 1], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_cpu_loop_equals_grouped_convolution(kind, monkeypatch):
    """The CPU's per-group loop and the grouped convolution (used on GPUs) compute the same thing."""
    import mimic.surrogate as sur

    f = make(kind, 3, 3, 1, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in f.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = _x().requires_grad_(True)
    y_loop = f(x)
    (g_loop,) = torch.autograd.grad(y_loop.square().sum(), [x])
    monkeypatch.setattr(sur, "CPU_LOOP", False)
    y_grp = f(x)
    (g_grp,) = torch.autograd.grad(y_grp.square().sum(), [x])
    assert torch.allclose(y_loop, y_grp, atol=1e-5) and torch.allclose(g_loop, g_grp, atol=1e-4)


def test_negate_and_select():
    f = make("gated", 3, 3, 3, 16, generator=torch.Generator().manual_seed(0))
    x = _x() * 0.9
    f.negate(torch.tensor([False, True, False]))
    y = f(x)
    assert torch.allclose(y[0], x[0], atol=1e-6) and torch.allclose(y[1], -x[1], atol=1e-6)
    g = f.select(torch.tensor([1, 1, 2]))
    assert g.S == 3 and torch.allclose(g(x), torch.stack([-x[0], -x[1], x[2]]), atol=1e-6)
    assert sorted(n for n, _ in g.named_parameters()) == sorted(n for n, _ in f.named_parameters())


def test_registry_names_builds_and_passes_objects_through():
    assert list_surrogates() == ["gated", "paper", "fmnist", "identity"]
    f = make("paper", 2, 3, 3, 16)
    assert isinstance(f, BatchedSurrogate) and f.kind == "paper" and f.S == 2
    assert get_surrogate(f) is f
    with pytest.raises(KeyError, match="valid: gated, paper, fmnist, identity"):
        make("nope", 1, 3, 3, 16)


def test_same_seed_same_weights_whatever_the_group_count():
    """Group s's initial weights do not depend on how many groups are batched with it."""
    a = make("paper", 1, 3, 3, 16, generator=torch.Generator().manual_seed(0))
    b = make("paper", 3, 3, 3, 16, generator=torch.Generator().manual_seed(0))
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p[0], q[0]), n


def _fit(f, x, y, steps=400, lr=1e-2):
    """Fit the surrogate alone to y = T(x) (Adam), returning the final mean |f(x) - y|."""
    opt = torch.optim.Adam(f.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = (f(x) - y).abs().mean()
        loss.backward()
        opt.step()
    return float((f(x) - y).abs().mean())


_T = {  # global colour and tone transforms of u = (x + 1) / 2, back to [-1, 1]
    "gains_offsets": lambda u: u * torch.tensor([1.2, 0.9, 0.7]).view(3, 1, 1) + torch.tensor([0.0, 0.05, 0.1]).view(3, 1, 1),
    "colour_mixing": lambda u: torch.einsum("oc,...chw->...ohw", torch.tensor(
        [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]), u),
    "channel_swap": lambda u: u.flip(-3),
    "tone_curve": lambda u: u.clamp(min=1e-6) ** 2.2,
    "veil": lambda u: 0.5 * u + 0.4,
}


@pytest.mark.parametrize("name", list(_T))
def test_gated_surrogate_learns_global_colour_and_tone_transforms_from_identity(name):
    """The default surrogate, started at identity, can represent per-channel gains and offsets, 3x3 colour mixing,
    channel swaps and tone curves: fitted to y = T(x) on smooth images, it ends far below where it starts."""
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4, generator=g), size=16, mode="bilinear")
    x = (u * 2 - 1)[None]  # (1, 8, 3, 16, 16)
    y = (_T[name](u).clamp(0, 1) * 2 - 1)[None]
    f = make("gated", 1, 3, 3, 16, generator=torch.Generator().manual_seed(0))
    start = float((f(x) - y).abs().mean())
    end = _fit(f, x, y)
    assert end < 0.1 * start and end < 0.02, (name, start, end)
