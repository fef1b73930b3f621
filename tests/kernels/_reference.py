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


def word(seed: int, i: int) -> int:
    """The 32-bit hash word of logical index ``i`` under ``seed``."""
    key = splitmix64(seed & M64)
    k0, k1 = key & M32, key >> 32
    lo, hi = i & M32, i >> 32
    h = _round(lo ^ k0, 0x7FEB352D, 0x846CA68B, 16, 15, 16)
    h ^= k1 ^ ((hi * 0x9E3779B9) & M32)
    return _round(h, 0x21F0AAAD, 0xD35A2D97, 16, 15, 15)


def keep_mask(seed: int, p: float, n: int, base: int = 0) -> list[bool]:
    """Keep decisions of ``n`` consecutive logical indices starting at ``base``."""
    t = min(round(p * 2**32), 2**32 - 1)
    return [word(seed, base + i) >= t for i in range(n)]
