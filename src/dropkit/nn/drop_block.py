"""DropBlock: drop contiguous square regions of convolutional feature maps.

Block centres ("seeds") are drawn with probability ``gamma`` at every position
where a ``block_size x block_size`` block fits inside the map, and each seed
zeroes its whole block. Ghiasi et al. set ``gamma`` from ``p`` with a formula
that ignores overlapping blocks, so the real drop fraction falls short of
``p``. Here ``gamma`` is solved exactly: a position covered by ``n`` possible
blocks is dropped with probability ``1 - (1 - gamma)^n``, and ``gamma`` is
chosen so the mean of that over the map equals ``p``.

Normalisation (``normalize``):
    - ``"position"`` (default): kept position ``(i, j)`` is scaled by
      ``1 / (1 - P_ij)`` with ``P_ij`` its exact drop probability, so
      ``E[output] = input`` element by element (border positions, covered by
      fewer blocks, are dropped less often and scaled less).
    - ``"batch"``: the paper's rule, ``count(M) / count_ones(M)`` over the
      whole mask; the mean of the mask is exactly 1 but each element is only
      approximately unbiased.

References:
    Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional
    networks", NeurIPS 2018.
"""

from __future__ import annotations

import functools
from collections import Counter
from enum import Enum

import torch
import torch.nn.functional as F

from dropkit._registry import register_dropout
from dropkit._validation import (
    _fail,
    check_choice,
    check_flags,
    check_generator,
    check_int,
    check_p,
    check_rank,
)
from dropkit.kernels import draw_mask
from dropkit.nn._base import DropoutBase, check_tensor


class BlockNorm(str, Enum):
    """How DropBlock rescales kept activations (see the module docstring)."""

    POSITION = "position"
    BATCH = "batch"


def _coverage(size: int, block: int) -> torch.Tensor:
    # How many valid block origins cover each position along one axis.
    i = torch.arange(size, dtype=torch.float64)
    return (
        torch.minimum(i, torch.tensor(size - block, dtype=torch.float64))
        - (i - block + 1).clamp(min=0)
        + 1
    )


def _cover(height: int, width: int, block_size: int) -> torch.Tensor:
    """``(H, W)`` float64 count of the valid blocks covering each position."""
    return _coverage(height, block_size)[:, None] * _coverage(width, block_size)[None, :]


@functools.lru_cache(maxsize=256)
def _solve_gamma(height: int, width: int, block_size: int, p: float) -> float:
    """Bisection for ``gamma`` in plain Python floats (no tensors, nothing to trace).

    A position covered by ``n`` blocks is dropped with probability
    ``1 - (1 - gamma)^n``; the counts ``n = a_i b_j`` take at most
    ``block_size**2`` distinct values, so the mean over the map is a short
    weighted sum.
    """
    if p == 0.0 or p == 1.0:
        return p

    def counts(size: int) -> Counter[int]:  # blocks covering each position of one axis
        last = size - block_size
        return Counter(min(i, last) - max(i - block_size + 1, 0) + 1 for i in range(size))

    weights: Counter[int] = Counter()
    for a, na in counts(height).items():
        for b, nb in counts(width).items():
            weights[a * b] += na * nb
    total = height * width

    def drop_fraction(gamma: float) -> float:
        return sum(m * (1.0 - (1.0 - gamma) ** n) for n, m in weights.items()) / total

    lo, hi = 0.0, 1.0
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if drop_fraction(mid) < p else (lo, mid)
    return 0.5 * (lo + hi)


@torch.compiler.assume_constant_result
def _traced_gamma(height: int, width: int, block_size: int, p: float) -> float:
    # torch.compile runs this eagerly and bakes the float into the graph
    # (the shapes and p are static there), so fullgraph tracing never sees
    # the data-dependent bisection
    return _solve_gamma(height, width, block_size, p)


def block_gamma(height: int, width: int, block_size: int, p: float) -> tuple[float, torch.Tensor]:
    """Return the seed rate ``gamma`` and per-position drop probabilities.

    Solves ``mean_ij[1 - (1 - gamma)^(a_i b_j)] = p`` by bisection, where
    ``a_i b_j`` counts the valid blocks covering position ``(i, j)``.

    Args:
        height: Feature-map height ``H``.
        width: Feature-map width ``W``.
        block_size: Side of the square block, at most ``min(H, W)``.
        p: Target expected drop fraction in ``[0, 1]``.

    Returns:
        ``gamma`` and the ``(H, W)`` float64 tensor of drop probabilities.

    Raises:
        TypeError: If a size is not an int or ``p`` not a float.
        ValueError: If a size is below 1, ``block_size`` exceeds
            ``min(height, width)``, or ``p`` is outside ``[0, 1]``.

    Example:
        >>> gamma, probs = block_gamma(5, 5, 1, 0.25)
        >>> round(gamma, 6), round(probs.mean().item(), 6)
        (0.25, 0.25)
    """
    caller = "block_gamma"
    height = check_int(caller, height, "height", minimum=1)
    width = check_int(caller, width, "width", minimum=1)
    block_size = check_int(caller, block_size, "block_size", minimum=1)
    p = check_p(caller, p, allow_one=True)
    _check_fits(caller, block_size, height, width, f"a {height}x{width} map")
    gamma = _solve_gamma(height, width, block_size, p)
    return gamma, 1.0 - (1.0 - gamma) ** _cover(height, width, block_size)


def _check_fits(caller: str, block_size: int, h: int, w: int, what: str) -> None:
    if block_size > min(h, w):
        raise _fail(
            ValueError,
            caller,
            f"block_size <= min(H, W) = {min(h, w)} for {what}",
            block_size,
            f"Use block_size <= {min(h, w)}, or apply it to a larger (earlier) feature map.",
        )


def _drop_block(
    caller: str,
    x: torch.Tensor,
    p: float,
    block_size: int,
    training: bool,
    normalize: str,
    inplace: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    p = check_p(caller, p, allow_one=True)
    block_size = check_int(caller, block_size, "block_size", minimum=1)
    norm = check_choice(caller, normalize, "normalize", [m.value for m in BlockNorm])
    check_generator(caller, generator)
    check_flags(caller, training=training, inplace=inplace)
    check_tensor(caller, x)
    check_rank(caller, x, (3, 4), "(C, H, W) or (N, C, H, W)")
    h, w = x.shape[-2:]
    _check_fits(caller, block_size, h, w, f"an input of shape {tuple(x.shape)}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x.zero_() if inplace else x * 0.0
    gamma = _traced_gamma(h, w, block_size, p)
    probs = 1.0 - (1.0 - gamma) ** _cover(h, w, block_size)
    lead = x.shape[:-2]  # (C,) or (N, C)
    valid = (h - block_size + 1, w - block_size + 1)
    seeds = (draw_mask((*lead, *valid), gamma, like=x, generator=generator) == 0).to(x.dtype)
    pad = block_size - 1
    # a seed at (r, c) covers rows r..r+bs-1, cols c..c+bs-1
    covered = F.max_pool2d(
        F.pad(seeds.reshape(-1, 1, *valid), (pad, pad, pad, pad)), block_size, stride=1
    ).reshape(x.shape)
    keep = 1.0 - covered
    if norm == BlockNorm.POSITION.value:
        # a position whose drop probability rounds to 1 is always dropped:
        # scale it by 0, not 1/0 (0 * inf would be NaN, e.g. at p = 0.999)
        scale = torch.where(probs < 1.0, 1.0 / (1.0 - probs), 0.0)
        keep = keep * scale.clamp(max=torch.finfo(x.dtype).max).to(x.device, x.dtype)
    else:
        keep = keep * (keep.numel() / keep.sum().clamp(min=1.0))
    return x.mul_(keep) if inplace else x * keep


def drop_block2d(
    x: torch.Tensor,
    p: float = 0.1,
    block_size: int = 7,
    training: bool = True,
    normalize: BlockNorm | str = BlockNorm.POSITION,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero square blocks of each feature map so that a fraction ``p`` is dropped.

    Args:
        x: Feature maps.
        p: Expected fraction of positions dropped, in ``[0, 1]``.
        block_size: Side of the square block, at most ``min(H, W)``.
        training: Apply DropBlock; identity when ``False``.
        normalize: ``"position"`` (exactly unbiased per element) or
            ``"batch"`` (the paper's global rescale).
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: same shape as input.

    Returns:
        The dropped feature maps.

    Raises:
        TypeError: If ``p`` is not a float or ``block_size`` not an int.
        ValueError: If ``p`` is out of range, the input is not 3-D or 4-D, or
            ``block_size`` exceeds the feature map.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = drop_block2d(torch.ones(8, 4, 9, 9), p=0.3, block_size=3, generator=g)
        >>> y.shape
        torch.Size([8, 4, 9, 9])
    """
    return _drop_block("drop_block2d", x, p, block_size, training, normalize, inplace, generator)


@register_dropout("block")
class DropBlock2d(DropoutBase):
    """DropBlock for 2-D feature maps: drop contiguous ``block_size`` squares.

    Stronger than channel or element dropout for convolutional networks, since
    neighbouring activations carry the same information. ``p`` is the expected
    dropped fraction (exact, overlaps included); see the module docstring for
    the normalisation options.

    Args:
        p: Expected drop fraction in ``[0, 1]``.
        block_size: Side of the square block.
        normalize: ``"position"`` or ``"batch"``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: same shape as input.

    Example:
        >>> DropBlock2d(p=0.1, block_size=5)
        DropBlock2d(p=0.1, block_size=5, normalize='position')
    """

    kind = "block"
    allow_one = True

    def __init__(
        self,
        p: float = 0.1,
        block_size: int = 7,
        normalize: BlockNorm | str = BlockNorm.POSITION,
        inplace: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, generator)
        self.block_size = check_int("DropBlock2d", block_size, "block_size", minimum=1)
        self.normalize = check_choice(
            "DropBlock2d", normalize, "normalize", [m.value for m in BlockNorm]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        return _drop_block(
            type(self).__name__,
            x,
            self.p,
            self.block_size,
            self.training,
            self.normalize,
            self.inplace,
            self.generator,
        )

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        return f"p={self.p}, block_size={self.block_size}, normalize={self.normalize!r}"
