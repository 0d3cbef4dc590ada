import pytest
import torch

from mimic.surrogate import BatchedSurrogate


def _x(S=3, B=4, C=3, H=16, g=0):
    return torch.rand(S, B, C, H, H, generator=torch.Generator().manual_seed(g)) * 2 - 1


@pytest.mark.parametrize("kind", ["gated", "paper", "fmnist", "identity"])
@pytest.mark.parametrize("cobs", [1, 3])
def test_shapes(kind, cobs, device):
    f = BatchedSurrogate(kind, 3, 3, cobs, 16).to(device)
    x = _x().to(device)
    y = f(x)
    assert y.shape == ((3, 4, 3, 16, 16) if kind == "identity" else (3, 4, cobs, 16, 16))
    assert torch.isfinite(y).all()


def test_gated_starts_at_identity():
    f = BatchedSurrogate("gated", 3, 3, 3, 16)
    x = _x() * 0.9
    assert torch.allclose(f(x), x, atol=1e-6)
    f1 = BatchedSurrogate("gated", 2, 3, 1, 16)
    assert torch.allclose(f1(x[:2]), x[:2].mean(2, keepdim=True), atol=1e-6)


KINDS = [("gated", {}), ("gated", {"separable": True}), ("paper", {}), ("fmnist", {})]


@pytest.mark.parametrize("kind,kw", KINDS)
def test_gradients_reach_every_parameter(kind, kw):
    f = BatchedSurrogate(kind, 2, 3, 3, 16, generator=torch.Generator().manual_seed(0), **kw)
    if kind == "gated":
        with torch.no_grad():
            f.w3.normal_(0, 0.01)
    x = _x(S=2) * 0.5
    (f(x) - _x(S=2, g=1)).abs().sum().backward()
    for n, p in f.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("kind,kw", KINDS)
def test_groups_are_independent(kind, kw):
    """Group s of a batched surrogate equals a one-group surrogate with group s's weights."""
    f = BatchedSurrogate(kind, 3, 3, 1, 16, generator=torch.Generator().manual_seed(0), **kw)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = _x()
    y = f(x)
    for s in range(3):
        g = BatchedSurrogate(kind, 1, 3, 1, 16, **kw)
        g.load_state_dict({k: v[s : s + 1] for k, v in f.state_dict().items()})
        assert torch.allclose(g(x[s : s + 1]), y[s : s + 1], atol=1e-5)


@pytest.mark.parametrize("kind,kw", KINDS)
def test_cpu_loop_equals_grouped_convolution(kind, kw, monkeypatch):
    """The CPU's per-group loop and the grouped convolution (used on GPUs) compute the same thing."""
    import mimic.surrogate as sur

    f = BatchedSurrogate(kind, 3, 3, 1, 16, generator=torch.Generator().manual_seed(0), **kw)
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
    f = BatchedSurrogate("gated", 3, 3, 3, 16, generator=torch.Generator().manual_seed(0))
    x = _x() * 0.9
    f.negate(torch.tensor([False, True, False]))
    y = f(x)
    assert torch.allclose(y[0], x[0], atol=1e-6) and torch.allclose(y[1], -x[1], atol=1e-6)
    g = f.select(torch.tensor([1, 1, 2]))
    assert g.S == 3 and torch.allclose(g(x), torch.stack([-x[0], -x[1], x[2]]), atol=1e-6)
    assert sorted(n for n, _ in g.named_parameters()) == sorted(n for n, _ in f.named_parameters())


def test_separable_starts_at_identity_and_moves_columns():
    f = BatchedSurrogate("gated", 2, 3, 3, 16, separable=True)
    x = _x(S=2) * 0.9
    assert torch.allclose(f(x), x, atol=1e-6)
    with torch.no_grad():  # group 1: output columns 0..4 copy input column 5 (stuck pixels); group 0 untouched
        f.Pw[1, :5] = 0
        f.Pw[1, :5, 5] = 1
    y = f(x)
    stuck = x[1].clone()
    stuck[..., :5] = x[1][..., 5:6]
    assert torch.allclose(y[0], x[0], atol=1e-6) and torch.allclose(y[1], stuck, atol=1e-6)
    with torch.no_grad():  # rows: output row 0 takes input row 15
        f.Ph[0, 0] = 0
        f.Ph[0, 0, 15] = 1
    assert torch.allclose(f(x)[0, :, :, 0], x[0, :, :, 15], atol=1e-6)
    with pytest.raises(ValueError, match="gated"):
        BatchedSurrogate("paper", 1, 3, 3, 16, separable=True)


def test_unknown_kind():
    with pytest.raises(ValueError, match="valid"):
        BatchedSurrogate("nope", 1, 3, 3, 16)
