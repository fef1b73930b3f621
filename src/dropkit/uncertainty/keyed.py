"""Row-keyed dropout masks: a row's mask does not depend on the batch it lands in.

``mc_predict`` gives every input row a key (``row_ids=``, by default its
position in the inputs). At each seeded site, sample ``s`` draws one 64-bit
site seed ``sigma`` from its generator (one draw per site call, whatever the
batch), and row ``r`` of the site's input uses the row seed
``rho = row_seed(sigma, key_r)``: its mask is exactly the mask the kernels
give a tensor of the row's shape under seed ``rho``
(:func:`dropkit.kernels.seeded_dropout`; the precise one-word-per-element form
for structured masks). The mask of a row is therefore a function of
``(seed, sample, row key, position within the row)`` only: not of the batch
size, the other rows, the row's position in the batch, the strategy or the
thread count.

Three implementations compute the same bits: on CPU with numba, one compiled
pass over all rows, each under its own seed
(:func:`dropkit.uncertainty._keyed_numba.dropout_rows`); on CUDA with Triton,
rows of at least :data:`ROW_KERNEL` elements call the kernel once per row;
otherwise (and under autograd) a keep mask hashed for all rows in int32 tensor
ops (the kernels' pure-torch generator with one key per row).

References:
    Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
    OOPSLA 2014 (SplitMix64). Salmon et al., "Parallel random numbers: as easy
    as 1, 2, 3", SC 2011 (counter-based generators).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch

from dropkit.kernels import _hash, _ops

#: On CUDA, rows with at least this many elements use one Triton call per row
#: (a call costs about as much as hashing ~10**3 elements in tensor ops).
ROW_KERNEL = 1024
_M64 = _hash.M64
_GOLDEN64 = 0x9E3779B97F4A7C15
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _signed64(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >= 1 << 63 else v


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


def row_seed(seed: int, key: int) -> int:
    """Kernel seed of the row with ``key`` at a site call whose seed is ``seed``.

    Args:
        seed: The site seed (any 64-bit integer).
        key: The row key (any 64-bit integer).

    Returns:
        A signed 64-bit seed for :func:`dropkit.kernels.seeded_dropout`.

    Example:
        >>> row_seed(1, 4) == row_seed(1, 4) != row_seed(1, 5)
        True
    """
    inner = _mix64((key * _GOLDEN64 + _GOLDEN64) & _M64)
    return _signed64(_mix64((seed + inner) & _M64))


def _mix64_np(z: np.ndarray) -> np.ndarray:
    # uint64 arrays wrap modulo 2**64 and shift logically, like the Python form
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
    return z ^ (z >> np.uint64(31))


def _u64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.int64).reshape(-1).numpy().view(np.uint64)


def _compiled() -> Any:
    """The compiled module :mod:`dropkit.uncertainty._keyed_numba`, or None."""
    if _ops._backend("numba") is None:
        return None
    from dropkit.uncertainty import _keyed_numba

    return _keyed_numba


def row_seeds(site_seeds: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """:func:`row_seed` for every pair, sample-major: ``(K,)`` x ``(M,)`` -> ``(K * M,)``.

    Compiled with numba when installed, else on numpy ``uint64`` arrays
    (cheaper than torch's per-operation dispatch on a few elements).

    Args:
        site_seeds: One int64 seed per sample block.
        keys: One int64 key per row of a block.

    Shape:
        - Output: ``(K * M,)``; entry ``j * M + r`` belongs to block ``j``, row ``r``.

    Returns:
        The int64 row seeds (CPU).
    """
    sigma, k = _u64(site_seeds), _u64(keys)
    compiled = _compiled()
    if compiled is not None:
        out = np.empty(len(sigma) * len(k), dtype=np.uint64)
        compiled.row_seeds(sigma, k, out)
    else:
        inner = _mix64_np(k * np.uint64(_GOLDEN64) + np.uint64(_GOLDEN64))
        out = _mix64_np(sigma[:, None] + inner[None, :]).reshape(-1)
    return torch.from_numpy(out.view(np.int64))


def keyed_keep(seeds: torch.Tensor, numel: int, p: float, *, precise: bool) -> torch.Tensor:
    """Keep mask of ``len(seeds)`` rows of ``numel`` elements, row ``r`` under ``seeds[r]``.

    Row ``r`` equals the kernels' mask of a ``numel``-element tensor under seed
    ``seeds[r]`` (paired 16-bit form, or the precise 32-bit form).

    Args:
        seeds: ``(R,)`` int64 row seeds.
        numel: Elements per row (below ``2**32``).
        p: Drop probability in ``[0, 1)``.
        precise: One 32-bit word per element (structured masks).

    Shape:
        - Output: ``(R, numel)``, bool, on the device of ``seeds``.

    Returns:
        ``True`` where the element is kept.
    """
    t = _hash.threshold(p, precise)
    device = seeds.device
    compiled = _compiled() if device.type == "cpu" else None
    if compiled is not None:
        out = np.empty((seeds.numel(), numel), dtype=np.bool_)
        compiled.keep_rows(_u64(seeds), numel, t, precise, out)
        return torch.from_numpy(out)
    key = _mix64_np(_u64(seeds) + np.uint64(_GOLDEN64))  # splitmix64(seed)
    # k0 = low word; the high key of index words below 2**32 is k1 itself (_hash.high_key)
    k0 = torch.from_numpy((key & np.uint64(_hash.M32)).astype(np.uint32).view(np.int32))
    kb = torch.from_numpy((key >> np.uint64(32)).astype(np.uint32).view(np.int32))
    words = numel if precise else -(-numel // 2)
    h = torch.arange(words, dtype=torch.int32, device=device).repeat(len(key), 1)
    tmp = torch.empty_like(h)
    h.bitwise_xor_(k0.to(device)[:, None])
    _hash._xorshift_(h, 16, tmp)
    h.mul_(_hash._s32(_hash.A1))
    _hash._xorshift_(h, 15, tmp)
    h.mul_(_hash._s32(_hash.A2))
    _hash._xorshift_(h, 16, tmp)
    h.bitwise_xor_(kb.to(device)[:, None])
    _hash._xorshift_(h, 16, tmp)
    h.mul_(_hash._s32(_hash.B1))
    _hash._xorshift_(h, 15, tmp)
    h.mul_(_hash._s32(_hash.B2))
    _hash._xorshift_(h, 15, tmp)
    st = _hash.signed_threshold(t, precise)
    if precise:
        return h.bitwise_xor_(-(1 << 31)) >= st
    if sys.byteorder == "big":  # the int16 view must list the low half first
        _hash.rotate16_(h, tmp)
    bits = h.bitwise_xor_(_ops._SIGN_BITS).view(torch.int16)  # (R, 2 * words)
    return bits[:, :numel] >= st


def _row_kernel(x: torch.Tensor) -> bool:
    """Whether the per-row CUDA kernel applies (the compiled paths write without autograd)."""
    return (
        x.device.type == "cuda"
        and _ops._backend("triton") is not None
        and x[0].numel() >= ROW_KERNEL
    )


def keyed_dropout(x: torch.Tensor, seeds: torch.Tensor, p: float) -> torch.Tensor:
    """Element-wise inverted dropout, row ``r`` of ``x`` with the mask of ``seeds[r]``.

    Equals ``torch.stack([seeded_dropout(x[r], p, seeds[r]) for r ...])`` up to
    the sign of dropped zeros.

    Args:
        x: Input ``(R, ...)``.
        seeds: ``(R,)`` int64 row seeds.
        p: Drop probability in ``[0, 1]``.

    Shape:
        - Input: ``(R, ...)``.
        - Output: same shape as input (contiguous).

    Returns:
        ``x * mask / (1 - effective_p(p))``.
    """
    if p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    compiled_ok = not (torch.is_grad_enabled() and x.requires_grad)
    compiled = _compiled() if compiled_ok and x.device.type == "cpu" else None
    if compiled is not None:
        return compiled.dropout_rows(x, seeds, p)
    if compiled_ok and _row_kernel(x):
        xc = x.contiguous()
        out = torch.empty_like(xc)
        for r, s in enumerate(seeds.tolist()):
            _ops.apply_(xc[r], out[r], int(s), p)
        return out
    keep = keyed_keep(seeds.to(x.device), x[0].numel(), p, precise=False).view(x.shape)
    # x * keep is x or 0 exactly; one rounding for the scale, as the kernels do
    return torch.mul(x, keep).mul_(_hash.scale(_hash.threshold(p)))


def keyed_mask(
    shape: tuple[int, ...], seeds: torch.Tensor, p: float, *, like: torch.Tensor
) -> torch.Tensor:
    """Scaled structured keep mask of ``shape`` (row ``r`` under ``seeds[r]``).

    Row ``r`` equals :func:`dropkit.kernels.draw_mask` of ``shape[1:]`` whose
    seed draw gave ``seeds[r]`` (the precise 32-bit form).

    Shape:
        - Output: ``shape``, dtype and device of ``like``.

    Returns:
        Entries ``0`` or ``1 / (1 - effective_p(p, precise=True))``.
    """
    if p == 0.0:
        return torch.ones(shape, dtype=like.dtype, device=like.device)
    if p >= 1.0:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    numel = math.prod(shape[1:])
    keep = keyed_keep(seeds.to(like.device), numel, p, precise=True).view(shape)
    scale = _hash.scale(_hash.threshold(p, True), True)
    return keep.to(like.dtype).mul_(scale)
