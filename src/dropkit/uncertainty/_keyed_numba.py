"""Compiled row-keyed masks and dropout (numba; the ``fast`` extra).

The same hash as :mod:`dropkit.kernels._numba`, with one key pair per row:
row ``r`` equals the kernels' result for a tensor of the row's elements under
the row's seed. :func:`dropout_rows` applies the dropout of every row in one
compiled pass (no mask in memory; rows shared out over the kernels' thread
pool when large), instead of one kernel call per row. Imported only when numba
is installed.

References:
    Lam, Pitrou and Seibert, "Numba: a LLVM-based Python JIT compiler",
    LLVM-HPC 2015.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from dropkit.kernels import _hash
from dropkit.kernels._numba import _M16, _S16, _U32, PARALLEL_MIN, _mix, _scale
from dropkit.kernels._pool import run_split

_G = np.uint64(0x9E3779B97F4A7C15)
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)


@njit(inline="always", cache=True)
def _mix64(z):  # type: ignore[no-untyped-def]
    z = (z ^ (z >> _S30)) * _C1
    z = (z ^ (z >> _S27)) * _C2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True)
def row_seeds(sigma, keys, out):  # type: ignore[no-untyped-def]
    """``out[j * M + r] = row_seed(sigma[j], keys[r])`` (uint64 arrays)."""
    m = keys.shape[0]
    for r in range(m):
        inner = _mix64(keys[r] * _G + _G)
        for j in range(sigma.shape[0]):
            out[j * m + r] = _mix64(sigma[j] + inner)


@njit(cache=True, nogil=True)
def keep_rows(seeds, numel, t, precise, out):  # type: ignore[no-untyped-def]
    """Fill ``out`` ``(R, numel)`` (bool) with the keep bits of each row's seed."""
    t32 = np.uint32(t)
    for r in range(seeds.shape[0]):
        key = _mix64(seeds[r] + _G)  # the kernels' splitmix64(seed)
        a, b = _U32(key & _LOW), _U32(key >> _S32)
        if precise:  # one word per element, all 32 bits against t
            for i in range(numel):
                out[r, i] = _mix(_U32(i), a, b) >= t32
        else:  # one word per pair: low half even, high half odd
            for q in range(numel >> 1):
                h = _mix(_U32(q), a, b)
                out[r, 2 * q] = (h & _M16) >= t32
                out[r, 2 * q + 1] = (h >> _S16) >= t32
            if numel & 1:
                h = _mix(_U32(numel >> 1), a, b)
                out[r, numel - 1] = (h & _M16) >= t32


@njit(cache=True, fastmath=False, nogil=True)
def _dropout_rows(x, out, seeds, r0, r1, t, scale):  # type: ignore[no-untyped-def]
    """Rows ``[r0, r1)`` of ``out = x * keep * scale``, row ``r`` under ``seeds[r]``."""
    t32 = _U32(t)
    zero = scale - scale  # 0 in the dtype of scale (an int literal would widen it)
    n = x.shape[1]
    pairs = n >> 1
    for r in range(r0, r1):
        key = _mix64(seeds[r] + _G)  # the kernels' splitmix64(seed)
        a, b = _U32(key & _LOW), _U32(key >> _S32)
        xs, os_ = x[r], out[r]
        # pair q < 2**32: the index high word is 0, so the kernels' kb is b itself
        for q in range(pairs):
            h = _mix(_U32(q), a, b)
            os_[2 * q] = xs[2 * q] * (scale if (h & _M16) >= t32 else zero)
            os_[2 * q + 1] = xs[2 * q + 1] * (scale if (h >> _S16) >= t32 else zero)
        if n & 1:  # a lone last element: the low half of its pair
            h = _mix(_U32(pairs), a, b)
            os_[n - 1] = xs[n - 1] * (scale if (h & _M16) >= t32 else zero)


def dropout_rows(x: torch.Tensor, seeds: torch.Tensor, p: float) -> torch.Tensor:
    """``x * mask / (1 - effective_p(p))`` with row ``r``'s mask under ``seeds[r]`` (CPU).

    Bit for bit :func:`dropkit.kernels.seeded_dropout` of each row; half
    precision computes in float32 and rounds once, as the kernels do.

    Shape:
        - x: ``(R, ...)``; seeds: ``(R,)`` int64.
        - Output: same shape as ``x`` (a new contiguous tensor).
    """
    t = _hash.threshold(p)
    xc = x.detach().contiguous()
    work = xc if xc.dtype in (torch.float32, torch.float64) else xc.float()
    out = torch.empty_like(work)
    rows = work.shape[0]
    if work.numel() == 0:
        return out.to(x.dtype)
    x2, o2 = work.reshape(rows, -1).numpy(), out.reshape(rows, -1).numpy()
    s = seeds.detach().to("cpu", torch.int64).contiguous().numpy().view(np.uint64)
    scale = _scale(t, x2.dtype, False)
    workers = max(1, min(torch.get_num_threads(), work.numel() // PARALLEL_MIN, rows))
    edges = [rows * w // workers for w in range(workers + 1)]
    run_split(
        _dropout_rows, [(x2, o2, s, lo, hi, t, scale) for lo, hi in zip(edges[:-1], edges[1:])]
    )
    return out if out.dtype == x.dtype else out.to(x.dtype)
