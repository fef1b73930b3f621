"""Per-model random streams shared by the batched and the one-by-one trainers.

Every model of a grid owns one PCG64 stream (O'Neill 2014) seeded from its own
seed. The stream is consumed in a fixed order: Glorot-uniform weights first
(Glorot & Bengio 2010), then per epoch one permutation of the rows and 16-bit
mask words for every row in that order (``d`` input then ``h`` hidden words).
Because ``random_raw`` hands out a plain sequence of 64-bit words, drawing the
mask words of an epoch in one call, per block of rows or per mini-batch gives
the same bits (blocks must hold a multiple of four words), so the batched
trainer and the sequential reference see identical masks and data order.

Masks compare 16-bit uniform integers with a threshold, so the rate actually
used is :func:`dropkit.kernels.effective_p` ``(p)``, the same 16-bit
quantisation as the kernels (``0.0050049`` for ``p = 0.005``), and the kept
units are scaled by the exact inverse keep rate of that quantised ``p``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dropkit.kernels import effective_p

#: Number of distinct mask words; a unit is dropped with probability t / 65536.
MASK_LEVELS = 65536

Seed = int | Sequence[int]


def _levels(p: float) -> int:
    # the one 16-bit quantisation of dropkit: kernels.effective_p is a multiple of 2**-16
    return int(effective_p(p) * MASK_LEVELS)


def keep_threshold(p: float) -> int:
    """Return the signed 16-bit threshold: a unit is kept iff its word ``>=`` it.

    Words are uniform on ``[-32768, 32767]``; ``P(word < t - 32768) = t / 65536``
    with ``t / 65536 =`` :func:`dropkit.kernels.effective_p` ``(p)``.
    """
    return _levels(p) - MASK_LEVELS // 2


def keep_scale(p: float) -> float:
    """Return ``1 / (1 - effective_p(p))``, the inverted-dropout scale."""
    return MASK_LEVELS / (MASK_LEVELS - _levels(p))


class ModelStream:
    """The random stream of one model: initial weights, data order and masks.

    Args:
        seed: An int or a sequence of ints (e.g. ``(run_seed, split, config)``),
            hashed by ``numpy.random.SeedSequence``.

    Example:
        >>> a, b = ModelStream((0, 1)), ModelStream((0, 1))
        >>> bool((a.mask_words(4, 3) == b.mask_words(4, 3)).all())
        True
    """

    def __init__(self, seed: Seed) -> None:
        entropy = [int(seed)] if isinstance(seed, int | np.integer) else [int(s) for s in seed]
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))

    def glorot(self, fan_in: int, fan_out: int) -> np.ndarray:
        """Draw a ``(fan_in, fan_out)`` Glorot-uniform float64 weight matrix."""
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return self._rng.uniform(-limit, limit, size=(fan_in, fan_out))

    def permutation(self, n: int) -> np.ndarray:
        """Return a random order of ``n`` rows (int64)."""
        return self._rng.permutation(n).astype(np.int64, copy=False)

    def mask_words(self, rows: int, width: int) -> np.ndarray:
        """Return ``(rows, width)`` uniform int16 mask words.

        Consecutive calls continue one word sequence as long as each call but
        the last asks for a multiple of four words (``rows * width % 4 == 0``).
        """
        count = rows * width
        words = self._rng.bit_generator.random_raw((count + 3) // 4)
        return words.view(np.int16)[:count].reshape(rows, width)

    def get_state(self) -> dict[str, Any]:
        """Return the generator state (plain Python data, picklable)."""
        return dict(self._rng.bit_generator.state)

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state returned by :meth:`get_state`."""
        self._rng.bit_generator.state = state
