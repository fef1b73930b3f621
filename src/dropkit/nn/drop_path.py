"""Stochastic depth (``DropPath``): drop a residual branch for whole samples.

In a residual block ``x + f(x)``, dropping ``f(x)`` for a sample skips the block
for that sample. Each sample of the batch gets its own Bernoulli draw; with
``scale_by_keep`` the kept branches are scaled by ``1/(1-p)`` so the expected
output is unchanged and nothing needs rescaling at test time.

References:
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016 (linear
    decay of survival probability with depth).
    Larsson et al., "FractalNet: Ultra-Deep Neural Networks without
    Residuals", ICLR 2017 (drop-path).
"""

from __future__ import annotations

import torch

from dropkit._registry import register_dropout
from dropkit._validation import _fail, check_flags, check_generator, check_p
from dropkit.kernels import draw_mask
from dropkit.nn._base import DropoutBase, check_tensor
from dropkit.schedules.depth import block_fractions, linear_depth


def _drop_path(
    caller: str,
    x: torch.Tensor,
    p: float,
    training: bool,
    scale_by_keep: bool,
    inplace: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    p = check_p(caller, p, allow_one=True)
    check_generator(caller, generator)
    check_flags(caller, training=training, scale_by_keep=scale_by_keep, inplace=inplace)
    check_tensor(caller, x)
    if x.dim() == 0:  # no batch dim to draw per sample over
        raise _fail(
            ValueError,
            caller,
            "an input with a batch dim (N, *)",
            tuple(x.shape),
            "Pass the batched branch output; for a single sample use x[None].",
        )
    if not training or p == 0.0:
        return x
    shape = (x.shape[0], *([1] * (x.dim() - 1)))  # (N, 1, ..., 1): one draw per sample
    mask = draw_mask(shape, p, like=x, generator=generator)
    if not scale_by_keep:
        mask = (mask != 0).to(x.dtype)
    return x.mul_(mask) if inplace else x * mask


def drop_path(
    x: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    scale_by_keep: bool = True,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``p``.

    Args:
        x: Output of a residual branch, batch first.
        p: Drop probability in ``[0, 1]``.
        training: Apply drop-path; identity when ``False``.
        scale_by_keep: Scale kept samples by ``1/(1-p)`` (keeps the expectation).
            Without it the training-time expectation is ``(1 - p) * x`` while eval
            returns ``x``; use that only to reproduce recipes that need it.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, *)``.
        - Output: same shape as input.

    Returns:
        The branch with dropped samples zeroed.

    Raises:
        TypeError: If ``p`` is not a float.
        ValueError: If ``p`` is out of range or ``x`` is 0-D (no batch dim).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = drop_path(torch.ones(64, 3, 5), p=0.5, generator=g)
        >>> bool((y == y[:, :1, :1]).all())  # each sample kept or dropped whole
        True
    """
    return _drop_path("drop_path", x, p, training, scale_by_keep, inplace, generator)


def drop_path_rates(p: float, depth: int) -> list[float]:
    """Return per-block drop-path rates rising linearly from 0 to ``p``.

    The linear rule of Huang et al. (2016): block ``i`` of ``depth`` gets
    ``p * i / (depth - 1)``, so early blocks (which all later ones depend on)
    are rarely dropped and the last block gets ``p``. This is
    :func:`dropkit.schedules.linear_depth` read at
    :func:`dropkit.schedules.depth.block_fractions`, the one formula.

    Args:
        p: Rate of the deepest block, in ``[0, 1]``.
        depth: Number of blocks (at least 1; a single block gets rate 0).

    Returns:
        ``depth`` floats.

    Raises:
        TypeError: If ``p`` is not a float or ``depth`` not an int.
        ValueError: If ``p`` is out of range or ``depth < 1``.

    Example:
        >>> drop_path_rates(0.1, 3)
        [0.0, 0.05, 0.1]
    """
    p = check_p("drop_path_rates", p, allow_one=True)
    profile = linear_depth(p)
    return [profile(d) for d in block_fractions(depth, "drop_path_rates")]


@register_dropout("path")
class DropPath(DropoutBase):
    """Stochastic depth: drop a residual branch for whole samples.

    Wrap the branch output of a residual block: ``x + drop_path(f(x))``. Use
    :func:`drop_path_rates` to give deeper blocks higher rates.

    Args:
        p: Drop probability in ``[0, 1]``.
        scale_by_keep: Scale kept samples by ``1/(1-p)``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, *)``.
        - Output: same shape as input.

    Example:
        >>> DropPath(p=0.1)
        DropPath(p=0.1, scale_by_keep=True)
    """

    kind = "path"
    allow_one = True

    def __init__(
        self,
        p: float = 0.1,
        scale_by_keep: bool = True,
        inplace: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, generator)
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        return _drop_path(
            type(self).__name__,
            x,
            self.p,
            self.training,
            self.scale_by_keep,
            self.inplace,
            self.generator,
        )

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        inplace = ", inplace=True" if self.inplace else ""
        return f"p={self.p}, scale_by_keep={self.scale_by_keep}{inplace}"
