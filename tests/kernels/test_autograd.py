"""Gradients, saved state, dtypes, layouts, in-place and torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dropkit.kernels import (
    SMALL,
    _ops,
    bernoulli_dropout,
    draw_mask,
    draw_seed,
    effective_p,
    seeded_dropout,
)
from dropkit.kernels._ops import seeded_dropout_op

from . import _reference as ref

P = 0.3


def _scale(p: float, dtype: torch.dtype) -> torch.Tensor:
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    return torch.tensor(1.0 / (1.0 - effective_p(p)), dtype=compute)


def _keep(seed: int, shape: tuple[int, ...], p: float = P) -> torch.Tensor:
    return torch.tensor(ref.keep_mask(seed, p, int(torch.Size(shape).numel()))).view(shape)


def _saved_bytes(fn, x: torch.Tensor) -> int:  # type: ignore[no-untyped-def]
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_is_grad_times_regenerated_mask(dtype: torch.dtype, seed: int) -> None:
    shape = (40, 60)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    g = torch.Generator().manual_seed(seed)
    y = bernoulli_dropout(x, P, generator=g)
    grad = torch.randn(shape, dtype=dtype)
    y.backward(grad)
    s = int(draw_seed(torch.Generator().manual_seed(seed)))
    keep = _keep(s, shape)
    factor = torch.where(keep, _scale(P, dtype), torch.zeros((), dtype=_scale(P, dtype).dtype))
    assert torch.equal(x.grad, (grad * factor).to(dtype))
    assert torch.equal(y.detach(), (x.detach() * factor).to(dtype))


def test_operator_autograd_and_gradcheck() -> None:
    seed = torch.tensor(11)
    x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    y = seeded_dropout_op(x, seed, P)
    grad = torch.randn(6, 7, dtype=torch.float64)
    y.backward(grad)
    keep = _keep(11, (6, 7))
    assert torch.equal(x.grad, grad * torch.where(keep, _scale(P, torch.float64), 0.0))
    assert torch.autograd.gradcheck(
        lambda t: seeded_dropout_op(t, seed, P), (x.detach().requires_grad_(),)
    )
    assert torch.autograd.gradgradcheck(
        lambda t: seeded_dropout(t, P, 11), (x.detach().requires_grad_(),)
    )


def test_nothing_but_the_seed_is_saved() -> None:
    x = torch.randn(100, 100, requires_grad=True)
    assert _saved_bytes(lambda t: bernoulli_dropout(t, P), x) == 0  # eager: seed kept as an int
    assert _saved_bytes(lambda t: seeded_dropout_op(t, torch.tensor(3), P), x) == 8
    assert _saved_bytes(lambda t: F.dropout(t, P), x) >= x.numel()  # torch keeps a mask


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_share_the_mask(dtype: torch.dtype, generator: torch.Generator) -> None:
    x = torch.randn(50, 60, generator=generator)
    xd = x.to(dtype).requires_grad_(True)
    y = seeded_dropout(xd, P, 1234)
    assert y.dtype == dtype
    assert torch.equal(y != 0, _keep(1234, (50, 60)))
    y.sum().backward()
    assert xd.grad.dtype == dtype and torch.equal(xd.grad != 0, _keep(1234, (50, 60)))


def test_non_contiguous_input_uses_logical_order(generator: torch.Generator) -> None:
    base = torch.randn(40, 60, generator=generator)
    for x in (base.t(), base[:, ::2], base.unsqueeze(0).expand(3, 40, 60)):
        y = seeded_dropout(x, P, 8)
        # torch's layout rule: x's strides when dense (x.t()), else dense in x's dim order
        assert y.stride() == torch.empty_like(x).stride()
        assert torch.equal(y, seeded_dropout(x.contiguous(), P, 8))
    # a non-contiguous gradient (from expand) takes the same path backward
    x = base.t().clone().requires_grad_(True)
    seeded_dropout(x, P, 8).sum(0).sum().backward()
    assert torch.equal(x.grad != 0, _keep(8, (60, 40)))


def test_inplace_without_grad(generator: torch.Generator) -> None:
    x = torch.randn(70, 80, generator=generator)
    want = seeded_dropout(x, P, 5)
    assert seeded_dropout(x, P, 5, inplace=True) is x and torch.equal(x, want)
    t = torch.randn(80, 70, generator=generator).t()  # non-contiguous, in place
    want = seeded_dropout(t, P, draw_seed(torch.Generator().manual_seed(1)))
    out = bernoulli_dropout(t, P, inplace=True, generator=torch.Generator().manual_seed(1))
    assert out is t and not t.is_contiguous()
    assert torch.equal(t, want)


def test_inplace_with_grad_matches_out_of_place(generator: torch.Generator) -> None:
    x = torch.randn(70, 80, generator=generator, requires_grad=True)
    h = x * 1.0
    y = seeded_dropout(h, P, 9, inplace=True)
    assert y is h
    y.sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    seeded_dropout(x2, P, 9).sum().backward()
    assert torch.equal(x.grad, x2.grad)
    leaf = torch.randn(10, 100, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        seeded_dropout(leaf, P, 1, inplace=True)


def test_edge_rates_and_empty() -> None:
    x = torch.randn(3000)
    assert bernoulli_dropout(x, 0.0) is x
    assert torch.equal(bernoulli_dropout(x, 1.0), torch.zeros(3000))
    assert torch.equal(seeded_dropout(x, 1.0, 3), torch.zeros(3000))
    inf = torch.full((3000,), float("inf"))
    assert torch.isnan(seeded_dropout(inf, 0.5, 3)).any()  # inf * 0 is nan, as in F.dropout
    assert seeded_dropout(torch.empty(0, 5), P, 3).shape == (0, 5)


def test_small_tensors_use_torch_sampler_reproducibly(seed: int) -> None:
    x = torch.ones(SMALL - 1)
    a = bernoulli_dropout(x, 0.5, generator=torch.Generator().manual_seed(seed))
    b = bernoulli_dropout(x, 0.5, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 2.0}
    torch.manual_seed(seed)
    c = bernoulli_dropout(x, 0.5)
    torch.manual_seed(seed)
    assert torch.equal(c, bernoulli_dropout(x, 0.5))


def test_draw_mask(seed: int) -> None:
    like = torch.empty(0, dtype=torch.float64)
    m = draw_mask((64, 1, 50), P, like=like, generator=torch.Generator().manual_seed(seed))
    assert m.shape == (64, 1, 50) and m.dtype == torch.float64
    # structured masks: one 32-bit word per element, p quantised to 2**-32
    scale = 1.0 / (1.0 - effective_p(P, precise=True))
    assert set(m.unique().tolist()) <= {0.0, scale}
    assert torch.equal(draw_mask((3, 3), 1.0, like=like), torch.zeros(3, 3, dtype=torch.float64))
    assert torch.equal(draw_mask((3, 3), 0.0, like=like), torch.ones(3, 3, dtype=torch.float64))


def test_torch_compile_fullgraph_no_graph_break(generator: torch.Generator) -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        h = bernoulli_dropout(x * 2.0, P)
        h = seeded_dropout(h * 1.0, P, 17, inplace=True)
        return h * 3.0

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    x = torch.randn(64, 64, generator=generator, requires_grad=True)
    y = compiled(x)
    y.sum().backward()
    keep = y != 0
    # d y / d x = 3 * scale * scale * 2 where both masks keep, 0 elsewhere
    assert torch.equal(x.grad != 0, keep)
    s = float(_scale(P, torch.float32))
    assert torch.allclose(x.grad[keep], torch.full_like(x.grad[keep], 6.0 * s * s))
    assert torch.equal(keep & ~_keep(17, (64, 64)), torch.zeros(64, 64, dtype=torch.bool))


def test_torch_fallback_backward_over_several_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_ops._backends, "numba", None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        x = torch.randn(2 * _ops.TORCH_CHUNK + 7, requires_grad=True)
        y = bernoulli_dropout(x, P, generator=torch.Generator().manual_seed(4))
        y.backward(torch.ones_like(y))
    finally:
        torch.set_num_threads(before)
    keep = bernoulli_dropout(torch.ones_like(x), P, generator=torch.Generator().manual_seed(4)) != 0
    assert torch.equal(y.detach(), x.detach() * torch.where(keep, _scale(P, torch.float32), 0.0))
    assert torch.equal(x.grad, torch.where(keep, _scale(P, torch.float32), 0.0))


def test_torch_compile_structured_masks_fullgraph(monkeypatch: pytest.MonkeyPatch) -> None:
    # channel and path masks use the precise form through the in-place op
    import dropkit.functional as DF

    # as in a fresh process: the backend is first resolved inside compiled code
    monkeypatch.delitem(_ops._backends, "numba", raising=False)

    def f(x: torch.Tensor) -> torch.Tensor:
        return DF.drop_path(DF.dropout2d(x, 0.3), 0.2) * 2.0

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    x = torch.randn(64, 8, 3, 3, requires_grad=True)
    torch.manual_seed(0)
    y = compiled(x)
    y.sum().backward()
    factor = y.detach() / x.detach()  # per-element factor: 0 or 2 * s_channel * s_path
    s = 2.0 / ((1 - effective_p(0.3, precise=True)) * (1 - effective_p(0.2, precise=True)))
    kept = factor != 0
    assert torch.allclose(factor[kept], torch.full_like(factor[kept], s))
    assert 0 < int(kept.sum()) < kept.numel()
    # whole channels are kept or dropped together, and the gradient is the same factor
    per_channel = kept.flatten(2)
    assert (per_channel.all(-1) | ~per_channel.any(-1)).all()
    assert torch.allclose(x.grad, factor)
