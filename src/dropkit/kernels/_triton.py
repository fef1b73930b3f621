"""GPU dropout kernel written in Triton: same hash as the CPU, fused scale.

One program handles ``BLOCK`` consecutive logical indices: it hashes each
element's pair index with the call's key (see :mod:`dropkit.kernels._hash`),
takes the low or high 16 bits of the word by the index parity, compares them
with the integer threshold and writes ``x * (scale or 0)`` in the input dtype
(half precision is computed in float32 and rounded once, as PyTorch does).
No mask is stored; backward runs the same kernel on the gradient. Because the
hash is bit-identical to the CPU kernel's, a seed gives the same mask on CPU
and GPU.

Triton is imported only when this module is, which happens on the first
dropout of a CUDA tensor; importing :mod:`dropkit` needs neither Triton nor a
GPU.

References:
    Tillet, Kung and Cox, "Triton: an intermediate language and compiler for
    tiled neural network computations", MAPL 2019.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from dropkit.kernels import _hash

BLOCK = 1024


@triton.jit
def _mix(lo, k0, kb):
    h = lo ^ k0
    h ^= h >> 16
    h *= tl.full(lo.shape, 0x7FEB352D, tl.uint32)
    h ^= h >> 15
    h *= tl.full(lo.shape, 0x846CA68B, tl.uint32)
    h ^= h >> 16
    h ^= kb
    h ^= h >> 16
    h *= tl.full(lo.shape, 0x21F0AAAD, tl.uint32)
    h ^= h >> 15
    h *= tl.full(lo.shape, 0xD35A2D97, tl.uint32)
    h ^= h >> 15
    return h


@triton.jit(do_not_specialize=["n", "base", "k0", "k1", "t", "scale_bits"])
def _dropout_kernel(
    x_ptr,
    out_ptr,
    n,
    base,
    k0,
    k1,
    t,
    scale_bits,
    BLOCK: tl.constexpr,
    F64: tl.constexpr,
    PRECISE: tl.constexpr,
):
    start = tl.program_id(0).to(tl.int64) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    inside = offs < n
    idx = offs + base.to(tl.int64)  # logical index
    # precise: one word per element; else one per pair (neighbouring lanes
    # hash the same pair: compute is cheap next to memory)
    word = idx if PRECISE else idx >> 1
    lo = (word & 0xFFFFFFFF).to(tl.uint32)
    hi = (word >> 32).to(tl.uint32)
    golden = tl.full(lo.shape, 0x9E3779B9, tl.uint32)
    kb = k1.to(tl.uint32) ^ (hi * golden)
    h = _mix(lo, k0.to(tl.uint32), kb)
    if PRECISE:
        keep = h >= t.to(tl.uint32)
    else:
        bits = (h >> ((idx & 1) * 16).to(tl.uint32)) & 0xFFFF
        keep = bits >= t.to(tl.uint32)
    x = tl.load(x_ptr + offs, mask=inside)
    # the host passes the bits of 1 / keep in the compute dtype, so the scale
    # is the CPU's to the last bit
    if F64:
        scale = scale_bits.to(tl.int64).to(tl.float64, bitcast=True)
        y = x.to(tl.float64) * tl.where(keep, scale, 0.0)
    else:
        scale = scale_bits.to(tl.uint32).to(tl.float32, bitcast=True)
        y = x.to(tl.float32) * tl.where(keep, scale, 0.0)
    tl.store(out_ptr + offs, y.to(x.dtype), mask=inside)


def dropout_(
    x: torch.Tensor, out: torch.Tensor, seed: int, t: int, base: int = 0, precise: bool = False
) -> None:
    """Write ``x * mask * scale`` into ``out`` (both contiguous, may alias).

    ``base`` is the logical index of ``x``'s first element (0 but in tests);
    ``precise`` selects the one-word-per-element structured-mask form.
    """
    k0, k1 = _hash.keys(seed)
    f64 = x.dtype == torch.float64
    n = x.numel()
    grid = (triton.cdiv(n, BLOCK),)
    _dropout_kernel[grid](
        x,
        out,
        n,
        base,
        k0,
        k1,
        t,
        _hash.scale_bits(t, f64, precise),
        BLOCK=BLOCK,
        F64=f64,
        PRECISE=precise,
    )
