"""Dropout kernels: the single entry point every functional goes through.

Callers use :func:`bernoulli_dropout` (element-wise inverted dropout) and never
know which implementation runs; faster CPU/GPU kernels slot in here.
"""

from __future__ import annotations

import torch


def bernoulli_dropout(
    x: torch.Tensor,
    p: float,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inverted Bernoulli dropout, always active (callers handle ``training``).

    Args:
        x: Input tensor of any shape and floating dtype.
        p: Drop probability, already validated, in ``[0, 1]``.
        inplace: Write the result into ``x``.
        generator: Source of randomness; the global generator when ``None``.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Returns:
        ``x * mask / (1 - p)`` with ``mask ~ Bernoulli(1 - p)``.
    """
    if p == 0.0:
        return x
    if p == 1.0:
        return x.zero_() if inplace else x * 0.0
    keep = 1.0 - p
    mask = torch.empty_like(x).bernoulli_(keep, generator=generator)
    mask.div_(keep)
    return x.mul_(mask) if inplace else x * mask


def draw_mask(
    shape: tuple[int, ...],
    p: float,
    *,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return a scaled keep mask ``Bernoulli(1 - p) / (1 - p)`` of ``shape``.

    Used by structured variants (spatial, locked, path, block) whose mask is
    broadcast over some dimensions.

    Shape:
        - Output: ``shape``, dtype and device of ``like``.
    """
    keep = 1.0 - p
    mask = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(
        keep, generator=generator
    )
    if keep > 0:
        mask.div_(keep)
    return mask
