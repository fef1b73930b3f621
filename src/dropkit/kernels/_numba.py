"""CPU dropout kernel compiled with numba: one fused pass, all cores, no mask.

Each output element is ``x[i] * (scale if bits(seed, i) >= t else 0)``, one
32-bit hash per pair of elements (see :mod:`dropkit.kernels._hash`), computed
in chunks of ``2**16`` elements that Python threads share (the compiled code
releases the GIL). The mask is a function of the logical index only, so it is
the same for any thread count. Compiled lazily on first
use per dtype and cached on disk (``cache=True``), so only the first process
pays for compilation.

The module imports numba at import time; :mod:`dropkit.kernels._ops` imports
it only when numba is installed (the ``fast`` extra).

References:
    Lam, Pitrou and Seibert, "Numba: a LLVM-based Python JIT compiler",
    LLVM-HPC 2015.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from numba import njit

from dropkit.kernels import _hash, _memory
from dropkit.kernels._pool import run_split

CHUNK = 1 << 16  # elements per parallel task (even: chunks start on pairs)
_U32 = np.uint32
_M32 = np.uint64(_hash.M32)
_M16 = _U32(0xFFFF)
_A1, _A2 = _U32(_hash.A1), _U32(_hash.A2)
_B1, _B2 = _U32(_hash.B1), _U32(_hash.B2)
_GOLDEN = _U32(_hash.GOLDEN)
_S15, _S16, _S32 = _U32(15), _U32(16), np.uint64(32)
_ONE = np.uint64(1)


# numba widens integer arithmetic to 64 bits; truncating every step back to
# uint32 lets LLVM narrow the vector code to 32-bit lanes (vpmulld instead of
# vpmullq: 16 lanes per AVX-512 register instead of 8, twice the hashes per op).
@njit(inline="always", cache=True)
def _mix(lo, k0, kb):  # type: ignore[no-untyped-def]
    h = _U32(lo ^ k0)
    h = _U32(h ^ (h >> _S16))
    h = _U32(h * _A1)
    h = _U32(h ^ (h >> _S15))
    h = _U32(h * _A2)
    h = _U32(h ^ (h >> _S16))
    h = _U32(h ^ kb)
    h = _U32(h ^ (h >> _S16))
    h = _U32(h * _B1)
    h = _U32(h ^ (h >> _S15))
    h = _U32(h * _B2)
    return _U32(h ^ (h >> _S15))


@njit(inline="always", cache=True)
def _word(j, k0, k1):  # type: ignore[no-untyped-def]
    """The hash word of counter ``j`` (a pair index; an element index when precise)."""
    kb = _U32(k1 ^ _U32(_U32(j >> _S32) * _GOLDEN))
    return _mix(_U32(j & _M32), k0, kb)


@njit(inline="always", cache=True)
def _chunk(x, out, c, base, k0, k1, t, scale, precise):  # type: ignore[no-untyped-def]
    # ``out`` may be ``x`` itself (in-place kernel): numba inlines this body,
    # so LLVM then sees one array and vectorises without an overlap check
    zero = scale - scale  # 0 in the dtype of scale (an int literal would widen it)
    start = c * CHUNK
    stop = min(start + CHUNK, x.size)
    first = base + np.uint64(start)
    last = base + np.uint64(stop - 1)
    if precise:  # one word per element, all 32 bits against t
        if (first >> _S32) == (last >> _S32):
            kb = _U32(k1 ^ _U32(_U32(first >> _S32) * _GOLDEN))
            lo = _U32(first & _M32)
            xs, os_ = x[start:stop], out[start:stop]
            for j in range(stop - start):
                h = _mix(_U32(lo + _U32(j)), k0, kb)
                os_[j] = xs[j] * (scale if h >= t else zero)
            return
        for i in range(start, stop):
            h = _word(base + np.uint64(i), k0, k1)
            out[i] = x[i] * (scale if h >= t else zero)
        return
    j0 = first >> _ONE
    if (first & _ONE) == 0 and (j0 >> _S32) == ((last >> _ONE) >> _S32):
        # the usual case: the chunk starts on a pair and the pair index high
        # word (hence kb) is constant, so the low word is a plain 32-bit
        # counter and one hash serves two elements, which vectorises
        kb = _U32(k1 ^ _U32(_U32(j0 >> _S32) * _GOLDEN))
        lo = _U32(j0 & _M32)
        xs, os_ = x[start:stop], out[start:stop]
        pairs = (stop - start) >> 1
        for q in range(pairs):
            h = _mix(_U32(lo + _U32(q)), k0, kb)
            os_[2 * q] = xs[2 * q] * (scale if (h & _M16) >= t else zero)
            os_[2 * q + 1] = xs[2 * q + 1] * (scale if (h >> _S16) >= t else zero)
        if (stop - start) & 1:  # a lone last element: the low half of its pair
            h = _mix(_U32(lo + _U32(pairs)), k0, kb)
            os_[2 * pairs] = xs[2 * pairs] * (scale if (h & _M16) >= t else zero)
        return
    for i in range(start, stop):
        idx = base + np.uint64(i)
        h = _word(idx >> _ONE, k0, k1)
        bits = (h >> _U32(16 * (idx & _ONE))) & _M16
        out[i] = x[i] * (scale if bits >= t else zero)


# base, k0, k1 and t arrive as Python ints (cheaper to pass than numpy
# scalars) and are cast once: int64 mixed with unsigned would give float64.
@njit(cache=True, fastmath=False, nogil=True)
def _dropout_chunks(x, out, c0, c1, base, k0, k1, t, scale, precise):  # type: ignore[no-untyped-def]
    base, k0, k1, t = np.uint64(base), _U32(k0), _U32(k1), _U32(t)
    for c in range(c0, c1):
        _chunk(x, out, c, base, k0, k1, t, scale, precise)


@njit(cache=True, fastmath=False, nogil=True)
def _dropout_chunks_inplace(x, c0, c1, base, k0, k1, t, scale, precise):  # type: ignore[no-untyped-def]
    base, k0, k1, t = np.uint64(base), _U32(k0), _U32(k1), _U32(t)
    for c in range(c0, c1):
        _chunk(x, x, c, base, k0, k1, t, scale, precise)


@njit(cache=True, fastmath=False, nogil=True)
def _dropout_strided(xf, of, shape, xst, ost, lst, start, stop, base, k0, k1, t, scale):  # type: ignore[no-untyped-def]
    """Positions ``[start, stop)`` of an n-D loop over a strided ``x`` and ``out``.

    ``xf`` / ``of`` are flat views of the storage from each tensor's first
    element. ``shape`` and the element strides ``xst`` / ``ost`` / ``lst``
    (``lst``: the logical, row-major index) describe the collapsed dims in
    loop order, the innermost last (the smallest output stride, so memory is
    walked in order). The multi-index carries over the outer dims. Mask bits
    are those of the contiguous kernel: pair ``g >> 1``, half ``g & 1`` of
    logical index ``g``; one hash serves a pair when the inner dim is
    logically contiguous.
    """
    base, k0, k1, t = np.uint64(base), _U32(k0), _U32(k1), _U32(t)
    zero = scale - scale
    nd = shape.size
    idx = np.zeros(nd, np.int64)
    rem = start
    for d in range(nd - 1, -1, -1):
        idx[d] = rem % shape[d]
        rem //= shape[d]
    xo = 0
    oo = 0
    lo = 0
    for d in range(nd):
        xo += idx[d] * xst[d]
        oo += idx[d] * ost[d]
        lo += idx[d] * lst[d]
    inner, sx, so, sl = shape[nd - 1], xst[nd - 1], ost[nd - 1], lst[nd - 1]
    h = _U32(0)
    i = start
    while i < stop:
        n = min(inner - idx[nd - 1], stop - i)
        g0 = base + np.uint64(lo)
        if sl == 1:
            for k in range(n):
                g = g0 + np.uint64(k)
                if k == 0 or (g & _ONE) == 0:
                    h = _word(g >> _ONE, k0, k1)
                bits = (h >> _U32(16 * (g & _ONE))) & _M16
                of[oo + k * so] = xf[xo + k * sx] * (scale if bits >= t else zero)
        elif sx == 1 and so == 1:  # memory order (channels_last): unit-stride slices vectorise
            xs, os_ = xf[xo : xo + n], of[oo : oo + n]
            for k in range(n):
                g = g0 + np.uint64(k * sl)
                h = _word(g >> _ONE, k0, k1)
                bits = (h >> _U32(16 * (g & _ONE))) & _M16
                os_[k] = xs[k] * (scale if bits >= t else zero)
        else:
            for k in range(n):
                g = g0 + np.uint64(k * sl)
                h = _word(g >> _ONE, k0, k1)
                bits = (h >> _U32(16 * (g & _ONE))) & _M16
                of[oo + k * so] = xf[xo + k * sx] * (scale if bits >= t else zero)
        i += n
        idx[nd - 1] += n
        xo += n * sx
        oo += n * so
        lo += n * sl
        d = nd - 1
        while d > 0 and idx[d] == shape[d]:  # carry into the next outer dim
            xo -= shape[d] * xst[d]
            oo -= shape[d] * ost[d]
            lo -= shape[d] * lst[d]
            idx[d] = 0
            d -= 1
            idx[d] += 1
            xo += xst[d]
            oo += ost[d]
            lo += lst[d]


def _flat(t: torch.Tensor) -> np.ndarray:
    """A 1-D numpy view of ``t``'s storage from its first element to its last."""
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
    return torch.as_strided(t.detach(), (span,), (1,), t.storage_offset()).numpy()


def _loop_dims(x: torch.Tensor, out: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """``(size, x stride, out stride, logical stride)`` per dim, in loop order.

    Size-1 dims are dropped, the rest ordered by decreasing output stride
    (stable, so logical order breaks ties) and neighbours merged where one
    run covers the next in all three index spaces.
    """
    logical, acc = [], 1
    for n in reversed(x.shape):
        logical.append(acc)
        acc *= n
    logical.reverse()
    dims = [
        (n, a, b, c) for n, a, b, c in zip(x.shape, x.stride(), out.stride(), logical) if n != 1
    ] or [(1, 0, 0, 0)]
    dims.sort(key=lambda d: -d[2])
    merged = [dims[0]]
    for n, a, b, c in dims[1:]:
        pn, pa, pb, pc = merged[-1]
        if pa == a * n and pb == b * n and pc == c * n:
            merged[-1] = (pn * n, a, b, c)
        else:
            merged.append((n, a, b, c))
    return merged


def dropout_strided_(x: torch.Tensor, out: torch.Tensor, seed: int, t: int, base: int = 0) -> None:
    """Write ``x * mask * scale`` into ``out`` for any strides of either (no copies).

    Used for non-contiguous inputs or outputs (``channels_last``, transposed,
    sliced, broadcast with stride 0 such as the gradient of ``y.sum()``); the
    mask is the contiguous kernel's, a function of the logical index only.
    ``out`` must not overlap itself or ``x``. When everything collapses to
    one logically contiguous dim (a broadcast scalar into a fresh output, a
    1-D slice), the chunked kernel runs on 1-D strided views, with bulk page
    population of ``out``.
    """
    k0, k1 = _hash.keys(seed)
    n = x.numel()
    dims = _loop_dims(x, out)
    xf, of = _flat(x), _flat(out)
    scale = _scale(t, xf.dtype, False)
    workers = max(1, min(torch.get_num_threads(), n // PARALLEL_MIN))
    if len(dims) == 1 and dims[0][3] == 1:
        _, sx, so, _ = dims[0]
        xs = np.lib.stride_tricks.as_strided(xf, (n,), (sx * xf.itemsize,))
        os_ = np.lib.stride_tricks.as_strided(of, (n,), (so * of.itemsize,))
        chunks = (n + CHUNK - 1) // CHUNK
        workers = min(workers, chunks)
        edges = [chunks * w // workers for w in range(workers + 1)]
        fill = _work if so == 1 and _memory.worth(os_.nbytes) else _dropout_chunks
        args = (base, k0, k1, t, scale, False)
        run_split(fill, [(xs, os_, lo, hi, *args) for lo, hi in zip(edges[:-1], edges[1:])])
        return
    arrays = [np.array([d[j] for d in dims], np.int64) for j in range(4)]
    edges = [n * w // workers for w in range(workers + 1)]
    run_split(
        _dropout_strided,
        [
            (xf, of, *arrays, lo, hi, base, k0, k1, t, scale)
            for lo, hi in zip(edges[:-1], edges[1:])
        ],
    )


def _work(x: np.ndarray, out: np.ndarray, c0: int, c1: int, *args: object) -> None:
    """One worker's share: map its part of a fresh output, then fill it."""
    stop = min(c1 * CHUNK, out.size)
    _memory.populate(
        out.ctypes.data + c0 * CHUNK * out.itemsize, (stop - c0 * CHUNK) * out.itemsize
    )
    _dropout_chunks(x, out, c0, c1, *args)


@functools.lru_cache(maxsize=64)
def _scale(t: int, dtype: np.dtype, precise: bool) -> np.floating:
    """``1 / keep`` as the numpy scalar type the kernel is compiled for."""
    return dtype.type(_hash.scale(t, precise))


#: Below this many elements per thread, one thread is faster than handing work
#: to the pool (each hand-off wakes a thread; ``dropkit bench kernels`` measures it).
PARALLEL_MIN = 1 << 17


def dropout_(
    x: torch.Tensor, out: torch.Tensor, seed: int, t: int, base: int = 0, precise: bool = False
) -> None:
    """Write ``x * mask * scale`` into ``out`` (both contiguous, may alias).

    ``x`` is float32 or float64 (callers convert half precision); the scale is
    ``1 / (1 - t / 2**16)`` rounded to ``x.dtype`` (``2**32`` and one word per
    element when ``precise``). ``base`` is the logical
    index of ``x``'s first element (0 but in tests of the index high word).
    Work is split into contiguous runs of chunks over ``torch.get_num_threads()``
    Python threads (see :mod:`dropkit.kernels._pool`); the mask depends only on
    the index, so the split never changes the result. Out of place, each worker
    first maps its share of a large ``out`` in bulk (:mod:`dropkit.kernels._memory`).
    In place (``out`` is ``x``) a separate compiled loop runs: with two array
    arguments that may overlap, LLVM's runtime overlap check sends aliased
    calls to the scalar (unvectorised) loop.
    """
    k0, k1 = _hash.keys(seed)
    inplace = x.data_ptr() == out.data_ptr()
    xs = x.detach().numpy().reshape(-1)
    os_ = xs if inplace else out.detach().numpy().reshape(-1)
    scale = _scale(t, xs.dtype, precise)
    chunks = (xs.size + CHUNK - 1) // CHUNK
    workers = min(torch.get_num_threads(), xs.size // PARALLEL_MIN, chunks)
    if workers <= 1:  # small calls: no pool hand-off, nothing to populate
        if inplace:
            _dropout_chunks_inplace(xs, 0, chunks, base, k0, k1, t, scale, precise)
        else:
            _dropout_chunks(xs, os_, 0, chunks, base, k0, k1, t, scale, precise)
        return
    edges = [chunks * w // workers for w in range(workers + 1)]
    ranges = list(zip(edges[:-1], edges[1:]))
    if inplace:
        run_split(
            _dropout_chunks_inplace,
            [(xs, lo, hi, base, k0, k1, t, scale, precise) for lo, hi in ranges],
        )
    else:
        fill = _work if _memory.worth(os_.nbytes) else _dropout_chunks
        run_split(fill, [(xs, os_, lo, hi, base, k0, k1, t, scale, precise) for lo, hi in ranges])
