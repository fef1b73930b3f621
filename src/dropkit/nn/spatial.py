"""Spatial (channel-wise) dropout: ``Dropout1d``, ``Dropout2d``, ``Dropout3d``.

Adjacent positions of a feature map are strongly correlated, so dropping single
elements barely regularises convolutional layers; dropping whole channels does.

References:
    Tompson et al., "Efficient Object Localization Using Convolutional
    Networks", CVPR 2015.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from dropkit._registry import register_dropout
from dropkit._validation import check_flags, check_generator, check_p
from dropkit.kernels import _is_functorch_wrapped, draw_mask
from dropkit.nn._base import (
    DropoutBase,
    check_droppable,
    check_is_tensor,
    check_rank,
    drop_all,
)

_LAYOUTS = {
    1: "(C, L) or (N, C, L)",
    2: "(N, C, H, W) or (N, C, L)",
    3: "(C, D, H, W) or (N, C, D, H, W)",
}
#: The warning ``torch.nn.Dropout2d`` gives for a 3-D input, word for word.
DROPOUT2D_3D_WARNING = (
    "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
    "1D dropout behavior is desired - input is interpreted as shape (N, C, L), where C "
    "is the channel dim. This behavior will change in a future release to interpret the "
    "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
    "channel-wise dropout behavior, please switch to using dropout1d instead."
)


def _feature_dropout(
    x: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
    caller: str,
) -> torch.Tensor:
    """One keep draw per ``(N, C)`` of a batched ``x``, broadcast over the rest."""
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if p == 1.0:
        return drop_all(x, inplace)
    check_droppable(caller, x)
    if _is_functorch_wrapped(x):  # vmap / grad: torch's sampler honours randomness=
        return torch.feature_dropout_(x, p, True) if inplace else torch.feature_dropout(x, p, True)
    mask = draw_mask((*x.shape[:2], *([1] * (x.dim() - 2))), p, like=x, generator=generator)
    # x first: the product takes x's memory layout (channels_last stays so)
    return x.mul_(mask) if inplace else x * mask


def _channel_dropout(
    caller: str,
    x: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
    spatial: int,
) -> torch.Tensor:
    p = check_p(caller, p, allow_one=True)
    check_generator(caller, generator)
    check_flags(caller, training=training, inplace=inplace)
    check_is_tensor(caller, x)
    check_rank(caller, x, (spatial + 1, spatial + 2), _LAYOUTS[spatial])
    if spatial == 2:
        # torch.nn.Dropout2d's historical reading of 3-D input: (N, C, L)
        if x.dim() == 3:
            warnings.warn(DROPOUT2D_3D_WARNING, UserWarning, stacklevel=3)
        return _feature_dropout(x, p, training, inplace, generator, caller)
    if x.dim() == spatial + 2:
        return _feature_dropout(x, p, training, inplace, generator, caller)
    # unbatched: as torch, through a (1, C, ...) view; the result is a view
    # of the input (in place: the input itself)
    out = _feature_dropout(x.unsqueeze(0), p, training, inplace, generator, caller)
    return x if inplace else out.squeeze(0)


def dropout1d(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
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
        ValueError: If ``x`` is not 2-D or 3-D (a
            :class:`~dropkit.nn._base.DropoutShapeError`, also the
            ``RuntimeError`` torch raises), or ``p`` is out of range.
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
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero whole channels of a 2-D feature map with probability ``p``.

    Survivors are scaled by ``1/(1-p)``. See :class:`Dropout2d` (a 3-D input
    is read as ``(N, C, L)``, with torch's warning).

    Args:
        x: Input, ``(N, C, H, W)`` or ``(N, C, L)``.
        p: Drop probability in ``[0, 1]``.
        training: Apply dropout; identity when ``False``.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(N, C, L)``.
        - Output: same shape as input.

    Returns:
        The dropped-out tensor.

    Raises:
        ValueError: If ``x`` is not 3-D or 4-D (a
            :class:`~dropkit.nn._base.DropoutShapeError`, also a
            ``RuntimeError``), or ``p`` is out of range.
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
    *,
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
        ValueError: If ``x`` is not 4-D or 5-D (a
            :class:`~dropkit.nn._base.DropoutShapeError`, also a
            ``RuntimeError``), or ``p`` is out of range.
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

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
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
class Dropout1d(_SpatialDropout, nn.Dropout1d):
    """Channel dropout for 1-D feature maps (sequences after ``Conv1d``).

    Each channel of each sample is zeroed with probability ``p`` for all its
    positions; survivors are scaled by ``1/(1-p)``. Accepts batched and
    unbatched input like ``torch.nn.Dropout1d``, and subclasses it.

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

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        if torch.jit.is_scripting():
            return F.dropout1d(input, self.p, self.training, self.inplace)
        return self._forward(input)


@register_dropout("dropout2d")
class Dropout2d(_SpatialDropout, nn.Dropout2d):
    """Channel dropout for 2-D feature maps (after ``Conv2d``).

    Each channel of each sample is zeroed with probability ``p`` over all of
    ``H, W``; survivors are scaled by ``1/(1-p)``. Use it in convolutional
    networks where element dropout is too weak. A subclass of
    ``torch.nn.Dropout2d`` that behaves like it: a 3-D input is read as
    ``(N, C, L)`` with torch's warning (for an unbatched ``(C, H, W)`` map,
    add the batch dim with ``x[None]``); other ranks, which torch only warns
    about, raise.

    Args:
        p: Drop probability in ``[0, 1]``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(N, C, L)``.
        - Output: same shape as input.

    Example:
        >>> Dropout2d(p=0.1).eval()(torch.ones(1, 2, 2, 2)).sum().item()
        8.0
    """

    spatial = 2

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        if torch.jit.is_scripting():
            return F.dropout2d(input, self.p, self.training, self.inplace)
        return self._forward(input)


@register_dropout("dropout3d")
class Dropout3d(_SpatialDropout, nn.Dropout3d):
    """Channel dropout for 3-D feature maps (after ``Conv3d``).

    Each channel of each sample is zeroed with probability ``p`` over all of
    ``D, H, W``; survivors are scaled by ``1/(1-p)``. A subclass of
    ``torch.nn.Dropout3d``.

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

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        if torch.jit.is_scripting():
            return F.dropout3d(input, self.p, self.training, self.inplace)
        return self._forward(input)
