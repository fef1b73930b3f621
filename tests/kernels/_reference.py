"""Naive reference of the dropout hash: plain Python integers, one element at a time.

Written from the specification in dropkit.kernels._hash's docstring, sharing no
code with the kernels, so equality with them checks every backend bit for bit.
"""

from __future__ import annotations

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def splitmix64(seed: int) -> int:
    z = (seed + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _round(h: int, m1: int, m2: int, s1: int, s2: int, s3: int) -> int:
    h ^= h >> s1
    h = (h * m1) & M32
    h ^= h >> s2
    h = (h * m2) & M32
    return h ^ (h >> s3)


def word(seed: int, j: int) -> int:
    """The 32-bit hash word of pair index ``j`` under ``seed``."""
    key = splitmix64(seed & M64)
    k0, k1 = key & M32, key >> 32
    lo, hi = j & M32, j >> 32
    h = _round(lo ^ k0, 0x7FEB352D, 0x846CA68B, 16, 15, 16)
    h ^= k1 ^ ((hi * 0x9E3779B9) & M32)
    return _round(h, 0x21F0AAAD, 0xD35A2D97, 16, 15, 15)


def keep_mask(seed: int, p: float, n: int, base: int = 0) -> list[bool]:
    """Keep decisions of ``n`` consecutive logical indices starting at ``base``."""
    t = threshold(p)
    out = []
    for i in range(base, base + n):
        w = word(seed, i // 2)
        bits = w & 0xFFFF if i % 2 == 0 else w >> 16
        out.append(bits >= t)
    return out


def threshold(p: float) -> int:
    """The 16-bit drop threshold of rate ``p``."""
    return min(round(p * 2**16), 2**16 - 1)


def keep_mask_precise(seed: int, p: float, n: int, base: int = 0) -> list[bool]:
    """The structured-mask form: one word per element against a 32-bit threshold."""
    t = min(round(p * 2**32), 2**32 - 1)
    return [word(seed, i) >= t for i in range(base, base + n)]
