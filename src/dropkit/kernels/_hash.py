"""The counter-based mask generator shared by every dropout kernel.

Elements are taken in pairs: the logical (row-major) indices ``2j`` and
``2j + 1`` share one 32-bit hash word of the call's 64-bit seed and the pair
index ``j``; the even element reads its low 16 bits, the odd one its high 16
bits::

    key   = splitmix64(seed)                  # k0 = low 32 bits, k1 = high 32
    lo,hi = j mod 2**32, j // 2**32           # j = i // 2
    w     = mix_b(mix_a(lo ^ k0) ^ k1 ^ (hi * GOLDEN mod 2**32))
    bits  = w mod 2**16 if i is even else w // 2**16
    keep  = bits >= threshold                 # threshold = round(p * 2**16)

``mix_a`` and ``mix_b`` are 32-bit xorshift-multiply finalisers (two rounds of
two multiplies, constants from the public hash-prospector search of Wellons,
2018). Both are bijections on 32-bit words, so within one key the words ``w``
are a permutation of the 32-bit words and every 16-bit value occurs equally
often in each half. Only 32-bit integer operations are used, which vectorise
on every x86/ARM CPU and are cheap on GPUs; one hash serves two elements,
which halves the arithmetic of the kernels. The CPU (numba), GPU (Triton) and
pure-torch kernels compute the same function, so a seed gives the same mask on
every device, dtype and thread count.

``p`` is quantised to ``threshold / 2**16`` (resolution ``2**-16``, so at most
``2**-17`` from the requested rate; rates below ``2**-17`` round to 0 and
nothing is dropped, rates above ``1 - 2**-17`` saturate at ``1 - 2**-16``).
The scale applied to kept elements is ``1 / (1 - effective_p)``, so the
expectation of the output is exactly the input.

The *precise* form, used for the small structured masks (spatial, path,
block, locked, alpha ...) whose rates can be tiny (a DropBlock seed rate is
often below ``10**-3``), gives every element its own word, ``w = hash(seed, i)``
with the same two rounds, and compares all 32 bits with
``round(p * 2**32)``: resolution ``2**-32``.

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
BITS = 16  # threshold resolution: p is a multiple of 2**-BITS
LEVELS = 1 << BITS


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


def levels(precise: bool) -> int:
    """Return the number of threshold steps: ``2**32`` precise, else ``2**16``."""
    return TWO32 if precise else LEVELS


def threshold(p: float, precise: bool = False) -> int:
    """Return the integer drop threshold ``round(p * L)``, at most ``L - 1``.

    ``L`` is :func:`levels`. ``p == 1`` is handled by the callers (everything
    dropped) and never reaches a kernel; values just below 1 saturate at
    ``1 - 1 / L``.
    """
    n = levels(precise)
    return min(round(p * n), n - 1)


def effective_p(p: float, *, precise: bool = False) -> float:
    """Return the drop probability the kernels actually use for ``p``.

    ``p`` is quantised to the nearest multiple of ``2**-16`` (within
    ``2**-17``); ``p == 0`` and ``p == 1`` are exact, rates below ``2**-17``
    give 0 (no dropout) and rates above ``1 - 2**-17`` give ``1 - 2**-16``.
    The kernels scale kept elements by ``1 / (1 - effective_p(p))``, so
    ``E[dropout(x)] == x`` holds exactly for the quantised rate.

    Args:
        p: Drop probability in ``[0, 1]``.
        precise: The rate of the structured masks (:func:`dropkit.kernels.draw_mask`)
            instead, quantised to ``2**-32``.

    Returns:
        The quantised drop probability.

    Example:
        >>> effective_p(0.1) == 6554 / 2**16
        True
        >>> effective_p(0.1, precise=True) == round(0.1 * 2**32) / 2**32
        True
    """
    if p >= 1.0:
        return 1.0
    return threshold(p, precise) / levels(precise)


def scale(t: int, precise: bool = False) -> float:
    """Return ``1 / keep`` for threshold ``t`` as a Python float (float64)."""
    n = levels(precise)
    return n / (n - t)


def scale_bits(t: int, f64: bool, precise: bool = False) -> int:
    """Return the IEEE bits of :func:`scale` rounded to float64 or float32."""
    fmt, ifmt = ("<d", "<q") if f64 else ("<f", "<I")
    return int(struct.unpack(ifmt, struct.pack(fmt, scale(t, precise)))[0])


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
    """Hash the low index words (pair or element) held in the int32 ``h``, in place.

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


def rotate16_(h: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """Swap the 16-bit halves of the int32 words in ``h``, in place."""
    torch.bitwise_right_shift(h, 16, out=tmp)
    tmp.bitwise_and_(0xFFFF)
    h.bitwise_left_shift_(16)
    return h.bitwise_or_(tmp)


def signed_threshold(t: int, precise: bool = False) -> int:
    """Map the unsigned comparison ``bits >= t`` onto signed int16 (int32) values.

    Flipping the top bit of both sides preserves order, so
    ``(bits ^ 0x8000) >= signed_threshold(t)`` in int16 arithmetic, and
    ``(w ^ 0x80000000) >= signed_threshold(t, precise=True)`` in int32.
    """
    if precise:
        return _s32(t ^ 0x80000000)
    v = t ^ 0x8000
    return v - LEVELS if v >= 1 << 15 else v
