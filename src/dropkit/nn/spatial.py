"""Spatial (channel-wise) dropout: ``Dropout1d``, ``Dropout2d``, ``Dropout3d``.

Adjacent positions of a feature map are strongly correlated, so dropping single
elements barely regularises convolutional layers; dropping whole channels does.

References:
    Tompson et al., "Efficient Object Localization Using Convolutional
    Networks", CVPR 2015.
"""

from __future__ import annotations

import torch

from dropkit._registry import register_dropout
from dropkit._validation import check_generator, check_p, check_rank
from dropkit.kernels import draw_mask
from dropkit.nn._base import DropoutBase, check_tensor

_LAYOUTS = {
    1: "(C, L) or (N, C, L)",
    2: "(C, H, W) or (N, C, H, W)",
    3: "(C, D, H, W) or (N, C, D, H, W)",
}


def _channel_dropout(
    where: str,
    x: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
    spatial: int,
) -> torch.Tensor:
    p = check_p(where, p, allow_one=True)
    check_generator(where, generator)
    check_tensor(where, x)
    check_rank(where, x, (spatial + 1, spatial + 2), _LAYOUTS[spatial])
    if not training or p == 0.0:
        return x
    # one keep draw per (sample, channel), broadcast over the spatial dims
    lead = x.shape[: x.dim() - spatial]  # (C,) unbatched or (N, C)
    mask = draw_mask((*lead, *([1] * spatial)), p, like=x, generator=generator)
    return x.mul_(mask) if inplace else x * mask


def dropout1d(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels of a 1-D feature map with probability ``p``.

    Survivors are scaled by ``1/(1-p)``. See :class:`Dropout1d`.

    Args:
        x: Input, batched ``(N, C, L)`` or unbatched ``(C, L)``.
        p: Drop probability in ``[0, 1]``.
        training: Apply dropout; identity when ``False``.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, L)`` or ``(C, L)``.
        - Output: same shape as input.

    Returns:
        The dropped-out tensor.

    Raises:
        ValueError: If ``x`` is not 2-D or 3-D, or ``p`` is out of range.
        TypeError: If ``p`` is not a float.

    Example:
        >>> dropout1d(torch.ones(2, 3, 4), p=0.0).shape
        torch.Size([2, 3, 4])
    """
    return _channel_dropout("dropout1d", x, p, training, inplace, generator, 1)


def dropout2d(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels of a 2-D feature map with probability ``p``.

    Survivors are scaled by ``1/(1-p)``. See :class:`Dropout2d`.

    Args:
        x: Input, batched ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        p: Drop probability in ``[0, 1]``.
        training: Apply dropout; identity when ``False``.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: same shape as input.

    Returns:
        The dropped-out tensor.

    Raises:
        ValueError: If ``x`` is not 3-D or 4-D, or ``p`` is out of range.
        TypeError: If ``p`` is not a float.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = dropout2d(torch.ones(1, 64, 3, 3), p=0.5, generator=g)
        >>> bool((y == y[:, :, :1, :1]).all())  # constant over H, W
        True
    """
    return _channel_dropout("dropout2d", x, p, training, inplace, generator, 2)


def dropout3d(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels of a 3-D feature map with probability ``p``.

    Survivors are scaled by ``1/(1-p)``. See :class:`Dropout3d`.

    Args:
        x: Input, batched ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``.
        p: Drop probability in ``[0, 1]``.
        training: Apply dropout; identity when ``False``.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, D, H, W)`` or ``(C, D, H, W)``.
        - Output: same shape as input.

    Returns:
        The dropped-out tensor.

    Raises:
        ValueError: If ``x`` is not 4-D or 5-D, or ``p`` is out of range.
        TypeError: If ``p`` is not a float.

    Example:
        >>> dropout3d(torch.ones(2, 3, 4, 4, 4), p=0.5, training=False).shape
        torch.Size([2, 3, 4, 4, 4])
    """
    return _channel_dropout("dropout3d", x, p, training, inplace, generator, 3)


class _SpatialDropout(DropoutBase):
    kind = "spatial"
    allow_one = True
    spatial = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        return _channel_dropout(
            type(self).__name__,
            x,
            self.p,
            self.training,
            self.inplace,
            self.generator,
            self.spatial,
        )


@register_dropout("dropout1d")
class Dropout1d(_SpatialDropout):
    """Channel dropout for 1-D feature maps (sequences after ``Conv1d``).

    Each channel of each sample is zeroed with probability ``p`` for all its
    positions; survivors are scaled by ``1/(1-p)``. Accepts batched and
    unbatched input like ``torch.nn.Dropout1d``.

    Args:
        p: Drop probability in ``[0, 1]``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, L)`` or ``(C, L)``.
        - Output: same shape as input.

    Example:
        >>> Dropout1d(p=0.2)
        Dropout1d(p=0.2, inplace=False)
    """

    spatial = 1


@register_dropout("dropout2d")
class Dropout2d(_SpatialDropout):
    """Channel dropout for 2-D feature maps (after ``Conv2d``).

    Each channel of each sample is zeroed with probability ``p`` over all of
    ``H, W``; survivors are scaled by ``1/(1-p)``. Use it in convolutional
    networks where element dropout is too weak. A 3-D input is an unbatched
    ``(C, H, W)`` map (``torch.nn.Dropout2d`` instead warns and treats it as
    ``(N, C, L)``; use :class:`Dropout1d` for that layout).

    Args:
        p: Drop probability in ``[0, 1]``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``.
        - Output: same shape as input.

    Example:
        >>> Dropout2d(p=0.1).eval()(torch.ones(1, 2, 2, 2)).sum().item()
        8.0
    """

    spatial = 2


@register_dropout("dropout3d")
class Dropout3d(_SpatialDropout):
    """Channel dropout for 3-D feature maps (after ``Conv3d``).

    Each channel of each sample is zeroed with probability ``p`` over all of
    ``D, H, W``; survivors are scaled by ``1/(1-p)``.

    Args:
        p: Drop probability in ``[0, 1]``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, D, H, W)`` or ``(C, D, H, W)``.
        - Output: same shape as input.

    Example:
        >>> Dropout3d(p=0.3)
        Dropout3d(p=0.3, inplace=False)
    """

    spatial = 3
