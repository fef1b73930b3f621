"""The counter-based mask generator shared by every dropout kernel.

The keep decision for the element at logical (row-major) index ``i`` is a pure
function of the call's 64-bit seed and ``i``::

    key   = splitmix64(seed)                  # k0 = low 32 bits, k1 = high 32
    lo,hi = i mod 2**32, i // 2**32
    h     = mix_b(mix_a(lo ^ k0) ^ k1 ^ (hi * GOLDEN mod 2**32))
    keep  = h >= threshold                    # threshold = round(p * 2**32)

``mix_a`` and ``mix_b`` are 32-bit xorshift-multiply finalisers (two rounds of
two multiplies, constants from the public hash-prospector search of Wellons,
2018). Both are bijections on 32-bit words, so within one key the values ``h``
are a permutation of the 32-bit words: the drop count of a tensor of ``n``
elements is hypergeometric, which for ``n << 2**32`` is the binomial. Only
32-bit integer operations are used, which vectorise on every x86/ARM CPU and
are cheap on GPUs; the CPU (numba), GPU (Triton) and pure-torch kernels compute
the same function, so a seed gives the same mask on every device, dtype and
thread count.

``p`` is quantised to ``threshold / 2**32`` (resolution ``2**-32``); the scale
applied to kept elements is ``1 / (1 - effective_p)``, so the expectation of
the output is exactly the input.

References:
    Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
    OOPSLA 2014 (SplitMix64). Salmon et al., "Parallel random numbers: as easy
    as 1, 2, 3", SC 2011 (counter-based generators).
"""

from __future__ import annotations

import struct

import torch

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
# round A / round B multipliers (32-bit xorshift-multiply finalisers)
A1, A2 = 0x7FEB352D, 0x846CA68B
B1, B2 = 0x21F0AAAD, 0xD35A2D97
GOLDEN = 0x9E3779B9  # mixes the high word of indices >= 2**32
TWO32 = 1 << 32


def splitmix64(seed: int) -> int:
    """Return the SplitMix64 finaliser of ``seed`` (a 64-bit word)."""
    z = (seed + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def keys(seed: int) -> tuple[int, int]:
    """Split the derived 64-bit key of ``seed`` into two 32-bit words."""
    key = splitmix64(seed & M64)
    return key & M32, key >> 32


def high_key(k1: int, hi: int) -> int:
    """Return the round-B key for indices whose high 32-bit word is ``hi``."""
    return k1 ^ ((hi * GOLDEN) & M32)


def threshold(p: float) -> int:
    """Return the integer drop threshold ``round(p * 2**32)``, at most ``2**32 - 1``.

    ``p == 1`` is handled by the callers (everything dropped) and never reaches
    a kernel; values just below 1 saturate at ``1 - 2**-32``.
    """
    return min(round(p * TWO32), TWO32 - 1)


def effective_p(p: float) -> float:
    """Return the drop probability the kernels actually use for ``p``.

    ``p`` is quantised to a multiple of ``2**-32``; ``p == 0`` and ``p == 1``
    are exact. The kernels scale kept elements by ``1 / (1 - effective_p(p))``,
    so ``E[dropout(x)] == x`` holds exactly for the quantised rate.

    Args:
        p: Drop probability in ``[0, 1]``.

    Returns:
        The quantised drop probability.

    Example:
        >>> effective_p(0.1) == round(0.1 * 2**32) / 2**32
        True
    """
    if p >= 1.0:
        return 1.0
    return threshold(p) / TWO32


def scale(t: int) -> float:
    """Return ``1 / keep`` for threshold ``t`` as a Python float (float64)."""
    return TWO32 / (TWO32 - t)


def scale_bits(t: int, f64: bool) -> int:
    """Return the IEEE bits of :func:`scale` rounded to float64 or float32."""
    fmt, ifmt = ("<d", "<q") if f64 else ("<f", "<I")
    return int(struct.unpack(ifmt, struct.pack(fmt, scale(t)))[0])


def _s32(v: int) -> int:
    """Reinterpret a 32-bit word as a signed int32 value."""
    v &= M32
    return v - TWO32 if v >= 1 << 31 else v


def _xorshift_(h: torch.Tensor, s: int, tmp: torch.Tensor) -> None:
    # int32 tensors shift arithmetically; masking makes it a logical shift.
    torch.bitwise_right_shift(h, s, out=tmp)
    tmp.bitwise_and_((1 << (32 - s)) - 1)
    h.bitwise_xor_(tmp)


def hash_block_(h: torch.Tensor, k0: int, kb: int, tmp: torch.Tensor) -> torch.Tensor:
    """Hash the low index words held in the int32 tensor ``h``, in place.

    The pure-torch form of the generator (int32 arithmetic wraps like uint32;
    results are 32-bit words stored as int32). ``kb`` is :func:`high_key` of
    the block. ``tmp`` is scratch space of the same shape.
    """
    h.bitwise_xor_(_s32(k0))
    _xorshift_(h, 16, tmp)
    h.mul_(_s32(A1))
    _xorshift_(h, 15, tmp)
    h.mul_(_s32(A2))
    _xorshift_(h, 16, tmp)
    h.bitwise_xor_(_s32(kb))
    _xorshift_(h, 16, tmp)
    h.mul_(_s32(B1))
    _xorshift_(h, 15, tmp)
    h.mul_(_s32(B2))
    _xorshift_(h, 15, tmp)
    return h


def signed_threshold(t: int) -> int:
    """Map the unsigned comparison ``h >= t`` onto signed int32 words.

    Flipping the top bit of both sides preserves order, so
    ``(h ^ 0x80000000) >= signed_threshold(t)`` in int32 arithmetic.
    """
    return _s32(t ^ 0x80000000)
