"""Compiled row-keyed keep masks (numba; the ``fast`` extra).

The same hash as :mod:`dropkit.kernels._numba`, with one key pair per row:
row ``r`` of the mask equals the kernels' mask of a tensor of ``numel``
elements under the row's seed. Imported only when numba is installed.

References:
    Lam, Pitrou and Seibert, "Numba: a LLVM-based Python JIT compiler",
    LLVM-HPC 2015.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dropkit.kernels._numba import _M16, _S16, _U32, _mix

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
