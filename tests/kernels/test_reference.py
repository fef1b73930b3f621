"""Every backend against the naive reference hash, bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dropkit.kernels import _hash, _ops, draw_mask, draw_seed, effective_p, seeded_dropout

from . import _reference as ref

SEEDS = (0, 12345, -1, 2**63 - 1)
N = 3000


def _numba_kernel():
    mod = _ops._backend("numba")
    if mod is None:
        pytest.skip("numba (the 'fast' extra) is not installed")
    return mod


def _expected(x: torch.Tensor, seed: int, p: float, base: int = 0) -> torch.Tensor:
    keep = torch.tensor(ref.keep_mask(seed, p, x.numel(), base)).view(x.shape)
    t = ref.threshold(p)
    scale = 2**16 / (2**16 - t)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    factor = torch.where(keep, torch.tensor(scale, dtype=compute), torch.tensor(0.0, dtype=compute))
    return (x.to(compute) * factor).to(x.dtype)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.93])
def test_numba_matches_reference(seed: int, p: float, generator: torch.Generator) -> None:
    _numba_kernel()
    x = torch.randn(N, generator=generator)
    assert torch.equal(seeded_dropout(x, p, seed), _expected(x, seed, p))


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_torch_fallback_matches_reference(
    seed: int, generator: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_ops._backends, "numba", None)
    x = torch.randn(N, generator=generator)
    assert torch.equal(seeded_dropout(x, 0.3, seed), _expected(x, seed, 0.3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("numba", [True, False])
def test_every_dtype_matches_reference(
    dtype: torch.dtype, numba: bool, generator: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    if numba:
        _numba_kernel()
    else:
        monkeypatch.setitem(_ops._backends, "numba", None)
    x = torch.randn(40, 50, generator=generator).to(dtype)
    y = seeded_dropout(x, 0.25, 99)
    assert y.dtype == dtype
    assert torch.equal(y, _expected(x, 99, 0.25))


# Pair indices near 2**31 (int32 sign) and 2**32 (high word) without a 4e9-element
# tensor, and a start on the odd element of a pair.
@pytest.mark.parametrize("base", [1, 2**32 - 1000, 2**33 - 1000, 5 * 2**33 + 17])
def test_index_high_word(base: int, generator: torch.Generator) -> None:
    x = torch.randn(2000, generator=generator)
    t = _hash.threshold(0.5)
    want = _expected(x, 7, 0.5, base)
    out = torch.empty_like(x)
    _ops.torch_dropout_(x, out, 7, t, base)
    assert torch.equal(out, want)
    out.zero_()
    _numba_kernel().dropout_(x, out, 7, t, base)
    assert torch.equal(out, want)


@pytest.mark.parametrize("base", [0, 2**32 - 1000, 5 * 2**32 + 17])
@pytest.mark.parametrize("numba", [True, False])
def test_precise_form_matches_reference(
    base: int, numba: bool, generator: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the structured-mask form: one word per element, 32-bit threshold
    x = torch.randn(2000, generator=generator, dtype=torch.float64)
    t = _hash.threshold(0.3, precise=True)
    out = torch.empty_like(x)
    if numba:
        _numba_kernel().dropout_(x, out, 7, t, base, True)
    else:
        _ops.torch_dropout_(x, out, 7, t, base, True)
    keep = torch.tensor(ref.keep_mask_precise(7, 0.3, 2000, base))
    scale = torch.tensor(2**32 / (2**32 - t), dtype=torch.float64)
    assert torch.equal(out, x * torch.where(keep, scale, torch.zeros((), dtype=torch.float64)))


def test_draw_mask_is_the_precise_form(generator: torch.Generator) -> None:
    like = torch.empty(0)
    n = 3 * _ops.TORCH_CHUNK  # above the small-tensor cutoff: the kernel runs
    mask = draw_mask((n,), 0.001, like=like, generator=torch.Generator().manual_seed(4))
    seed = int(draw_seed(torch.Generator().manual_seed(4)))
    keep = torch.tensor(ref.keep_mask_precise(seed, 0.001, n))
    assert torch.equal(mask != 0, keep)
    assert torch.all(mask[keep] == torch.tensor(1 / (1 - effective_p(0.001, precise=True))))


def test_effective_p_quantisation() -> None:
    assert effective_p(0.1) == 6554 / 2**16
    assert abs(effective_p(0.1) - 0.1) <= 2**-17
    assert effective_p(0.0) == 0.0 and effective_p(1.0) == 1.0
    assert effective_p(0.5) == 0.5
    assert effective_p(2**-18) == 0.0  # below half the 2**-16 resolution
    assert effective_p(3 * 2**-18) == 2**-16
    assert effective_p(1 - 1e-13) == 1 - 2**-16  # saturates below 1
    assert effective_p(0.1, precise=True) == round(0.1 * 2**32) / 2**32
    assert effective_p(1e-12, precise=True) == 0.0
    assert effective_p(1 - 1e-13, precise=True) == 1 - 2**-32


def test_scale_uses_effective_keep(generator: torch.Generator) -> None:
    p = 1 / 3
    y = seeded_dropout(torch.ones(10_000, dtype=torch.float64), p, 5)
    kept = y[y != 0]
    assert torch.all(kept == 1.0 / (1.0 - effective_p(p)))


_TRITON_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    sys.path.insert(0, sys.argv[1])
    from _reference import keep_mask, keep_mask_precise
    from dropkit.kernels import _triton, _ops
    x = torch.randn(3000, generator=torch.Generator().manual_seed(0))
    t = round(0.3 * 2**16)
    for base in (0, 1, 2**33 - 1500):
        for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            xd = x.to(dtype)
            out, want = torch.empty_like(xd), torch.empty_like(xd)
            _triton.dropout_(xd, out, 4242, t, base)
            _ops.torch_dropout_(xd, want, 4242, t, base)
            keep = torch.tensor(keep_mask(4242, 0.3, 3000, base))
            assert torch.equal(out != 0, keep), (base, dtype)
            # the interpreter truncates float32 -> bfloat16; GPUs round to nearest
            if dtype != torch.bfloat16:
                assert torch.equal(out, want), (base, dtype)
        tp = round(0.3 * 2**32)
        out = torch.empty_like(x)
        _triton.dropout_(x, out, 4242, tp, base, True)
        keep = torch.tensor(keep_mask_precise(4242, 0.3, 3000, base))
        assert torch.equal(out != 0, keep), (base, "precise")
    print("ok")
    """
)


def test_triton_kernel_matches_reference_in_interpreter() -> None:
    pytest.importorskip("triton", reason="triton is not installed")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _TRITON_SCRIPT, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("base", [0, 2**33 - 700_001])
def test_multi_block_torch_fallback_matches_numba(
    threads: int, base: int, generator: torch.Generator
) -> None:
    x = torch.randn(2 * _ops.TORCH_CHUNK + 12_345, generator=generator)
    t = _hash.threshold(0.2)
    want, out = torch.empty_like(x), torch.empty_like(x)
    _numba_kernel().dropout_(x, want, 99, t, base)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)  # intra-op threads share every block op
        _ops.torch_dropout_(x, out, 99, t, base)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out, want)


def test_numba_inplace_equals_out_of_place(generator: torch.Generator) -> None:
    # the in-place call runs a separately compiled loop (no overlap check)
    kernel = _numba_kernel()
    x = torch.randn(5 * kernel.CHUNK + 3, generator=generator)
    want = torch.empty_like(x)
    kernel.dropout_(x, want, 31, _hash.threshold(0.4))
    kernel.dropout_(x, x, 31, _hash.threshold(0.4))
    assert torch.equal(x, want)


GRAD_VIEWS = {
    "stride-0": lambda g: g[:1, :1].expand(40, 70),  # the gradient of y.sum() is of this kind
    "row-broadcast": lambda g: g[:1].expand(40, 70),
    "transposed": lambda g: g.reshape(70, 40).t(),
    "sliced": lambda g: g.repeat(1, 2)[:, ::2],
    "channels_last": lambda g: g.reshape(40, 7, 5, 2).to(memory_format=torch.channels_last),
}


@pytest.mark.parametrize("view", sorted(GRAD_VIEWS))
@pytest.mark.parametrize("numba", [True, False])
def test_backward_reads_strided_and_broadcast_gradients(
    view: str, numba: bool, generator: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # backward is the kernel applied to the upstream gradient: read in place
    # (numba) or through a contiguous copy (fallback), the mask is the
    # reference's at the logical index either way
    if numba:
        _numba_kernel()
        monkeypatch.setattr(_ops, "STRIDED_MIN", 0)  # the strided kernel at this size too
    else:
        monkeypatch.setitem(_ops._backends, "numba", None)
    g = GRAD_VIEWS[view](torch.randn(40, 70, generator=generator))
    x = torch.randn(g.shape, generator=generator, requires_grad=True)
    (grad,) = torch.autograd.grad(seeded_dropout(x, 0.3, 77), x, g)
    assert torch.equal(grad, _expected(g.contiguous(), 77, 0.3))
    # forward on the same view: the output keeps the dense views' strides
    y = seeded_dropout(g, 0.3, 77)
    assert y.stride() == torch.empty_like(g).stride()
    assert torch.equal(y, _expected(g.contiguous(), 77, 0.3))


def test_large_broadcast_gradient_uses_every_worker_and_matches_dense(
    generator: torch.Generator,
) -> None:
    # above PARALLEL_MIN per thread the stride-0 path splits over workers
    _numba_kernel()
    n = 2 * (1 << 17) + 12345
    dense = seeded_dropout(torch.full((n,), 1.5), 0.2, 5)
    assert torch.equal(seeded_dropout(torch.tensor(1.5).expand(n), 0.2, 5), dense)
    grid = torch.tensor(1.5).expand(3, n // 3)
    assert torch.equal(seeded_dropout(grid, 0.2, 5), dense[: grid.numel()].view(grid.shape))


@pytest.mark.parametrize("view", sorted(GRAD_VIEWS))
def test_strided_kernel_above_its_threshold(view: str, generator: torch.Generator) -> None:
    _numba_kernel()
    big = torch.randn(280, 700, generator=generator)  # every view above STRIDED_MIN
    g = {
        "stride-0": big[:1, :1].expand(280, 700),
        "row-broadcast": big[:1].expand(280, 700),
        "transposed": big.t(),
        "sliced": big[:, ::2],
        "channels_last": big.reshape(40, 7, 5, 140).to(memory_format=torch.channels_last),
    }[view]
    assert g.numel() >= _ops.STRIDED_MIN
    y = seeded_dropout(g, 0.3, 78)
    assert y.stride() == torch.empty_like(g).stride()
    assert torch.equal(y, seeded_dropout(g.contiguous(), 0.3, 78))
