"""Alpha dropout for self-normalising (SELU) networks.

Plain dropout breaks the fixed point (mean 0, variance 1) that SELU networks
rely on. Alpha dropout sets dropped units to the SELU saturation value
``alpha' = -lambda * alpha`` and applies the affine map ``a * d + b`` with

    ``a = ((1 - p) * (1 + p * alpha'^2)) ** -0.5`` and ``b = -a * alpha' * p``,

which restores mean 0 and variance 1 exactly for inputs of mean 0 and variance 1:
with ``d = x * m + alpha' * (1 - m)``, ``E[d] = alpha' p`` and
``Var[d] = (1 - p) (1 + p alpha'^2)``.

References:
    Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dropkit._registry import register_dropout
from dropkit._validation import _fail, check_flags, check_generator, check_p
from dropkit.kernels import _is_functorch_wrapped, draw_mask
from dropkit.nn._base import (
    DropoutBase,
    DropoutShapeError,
    check_droppable,
    check_is_tensor,
    drop_all,
)

#: SELU constants (Klambauer et al. 2017, eq. 14).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946
#: Value a dropped unit takes before the affine correction: ``-lambda * alpha``.
ALPHA_PRIME = -SELU_LAMBDA * SELU_ALPHA


def alpha_coefficients(p: float) -> tuple[float, float]:
    """Return the affine correction ``(a, b)`` of alpha dropout at rate ``p``.

    Args:
        p: Drop probability in ``[0, 1)`` (at ``p = 1`` the correction is
            infinite; the layers then return zeros, as torch's do).

    Returns:
        ``a = ((1 - p)(1 + p alpha'^2))^(-1/2)`` and ``b = -a alpha' p``.

    Raises:
        TypeError: If ``p`` is not a float.
        ValueError: If ``p`` is NaN or outside ``[0, 1)``.

    Example:
        >>> [round(c, 4) for c in alpha_coefficients(0.1)]
        [0.9213, 0.162]
    """
    p = check_p("alpha_coefficients", p)
    a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * ALPHA_PRIME**2))
    return a, -a * ALPHA_PRIME * p


def _alpha(
    caller: str,
    x: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
    feature: bool,
) -> torch.Tensor:
    p = check_p(caller, p, allow_one=True)
    check_generator(caller, generator)
    check_flags(caller, training=training, inplace=inplace)
    check_is_tensor(caller, x)
    # torch's order: identity, then p == 1 gives zeros, then the rank and
    # dtype checks of an actual draw
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if p == 1.0:
        return drop_all(x, inplace)
    if feature and x.dim() < 2:
        raise _fail(
            DropoutShapeError,
            caller,
            "an input of 2 or more dims (N, C, *)",
            tuple(x.shape),
            "Add the batch and channel dims, or use AlphaDropout for element-wise dropout.",
        )
    check_droppable(caller, x)
    if _is_functorch_wrapped(x):  # vmap / grad: torch's sampler honours randomness=
        fn = torch.feature_alpha_dropout if feature else torch.alpha_dropout
        fn_ = torch.feature_alpha_dropout_ if feature else torch.alpha_dropout_
        return fn_(x, p, True) if inplace else fn(x, p, True)
    # feature variant: one draw per (sample, channel), broadcast over the rest
    shape = (*x.shape[:2], *([1] * (x.dim() - 2))) if feature else tuple(x.shape)
    keep = (draw_mask(shape, p, like=x, generator=generator) != 0).to(x.dtype)
    if not feature and not x.is_contiguous():
        # torch draws its noise in x's layout, and the gradient x * noise
        # passes back takes that layout too (channels_last stays so)
        keep = torch.empty_like(x).copy_(keep)
    a, b = alpha_coefficients(p)
    scale = keep * a  # a where kept, 0 where dropped
    shift = (1.0 - keep) * (a * ALPHA_PRIME) + b  # b where kept, a*alpha'+b where dropped
    # x first: the product takes x's memory layout (channels_last stays so)
    if inplace:
        return x.mul_(scale).add_(shift)
    return (x * scale).add_(shift)


def alpha_dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Element-wise alpha dropout that keeps mean 0 and variance 1.

    Dropped elements become ``alpha'``; then ``a * d + b`` restores the moments
    (see the module docstring for ``a`` and ``b``).

    Args:
        x: Input, ideally SELU activations (mean 0, variance 1).
        p: Drop probability in ``[0, 1]``; ``p = 1`` returns zeros (as torch).
        training: Apply dropout; identity when ``False``.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Returns:
        The dropped-out tensor.

    Raises:
        TypeError: If ``p`` is not a float.
        ValueError: If ``p`` is outside ``[0, 1]``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = alpha_dropout(torch.randn(100_000, generator=g), 0.2, generator=g)
        >>> abs(y.mean().item()) < 0.05, abs(y.var().item() - 1) < 0.05
        (True, True)
    """
    return _alpha("alpha_dropout", x, p, training, inplace, generator, feature=False)


def feature_alpha_dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Channel-wise alpha dropout: whole channels take ``alpha'``, then ``a * d + b``.

    Args:
        x: Input ``(N, C, *)``.
        p: Drop probability in ``[0, 1]``; ``p = 1`` returns zeros (as torch).
        training: Apply dropout; identity when ``False``.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, *)``.
        - Output: same shape as input.

    Returns:
        The dropped-out tensor.

    Raises:
        TypeError: If ``p`` is not a float.
        ValueError: If ``p`` is outside ``[0, 1]``, or ``x`` has fewer than 2
            dims when dropping (a :class:`~dropkit.nn._base.DropoutShapeError`,
            also the ``RuntimeError`` torch raises).

    Example:
        >>> feature_alpha_dropout(torch.zeros(2, 3, 4), 0.2, training=False).shape
        torch.Size([2, 3, 4])
    """
    return _alpha("feature_alpha_dropout", x, p, training, inplace, generator, feature=True)


@register_dropout("alpha")
class AlphaDropout(DropoutBase, nn.AlphaDropout):
    """Alpha dropout for SELU networks (element-wise).

    Keeps the self-normalising property: standard normal input gives output of
    mean 0 and variance 1. Use it instead of ``Dropout`` after ``nn.SELU``.
    A subclass of ``torch.nn.AlphaDropout``; ``p = 1`` gives zeros, as there.

    Args:
        p: Drop probability in ``[0, 1]``.
        inplace: Accepted and shown in the ``repr``, but, as in
            ``torch.nn.AlphaDropout``, the output is always a new tensor (use
            :func:`alpha_dropout` with ``inplace=True`` to write into the input).
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Example:
        >>> AlphaDropout(p=0.1)
        AlphaDropout(p=0.1, inplace=False)
    """

    kind = "alpha"
    allow_one = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        # torch's layer never passes ``inplace`` on (its output is always a
        # new tensor); the same here, so code written for it sees no change
        if torch.jit.is_scripting():
            return F.alpha_dropout(input, self.p, self.training)
        where = type(self).__name__
        return _alpha(where, input, self.p, self.training, False, self.generator, False)


@register_dropout("feature_alpha")
class FeatureAlphaDropout(DropoutBase, nn.FeatureAlphaDropout):
    """Channel-wise alpha dropout for SELU convolutional networks.

    Whole channels are set to ``alpha'``; the affine correction keeps mean 0 and
    variance 1 as in :class:`AlphaDropout`. A subclass of
    ``torch.nn.FeatureAlphaDropout``; ``p = 1`` gives zeros, as there.

    Args:
        p: Drop probability in ``[0, 1]``.
        inplace: Accepted and shown in the ``repr``, but, as in
            ``torch.nn.FeatureAlphaDropout``, the output is always a new tensor.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, *)``.
        - Output: same shape as input.

    Example:
        >>> FeatureAlphaDropout(p=0.1).eval()(torch.zeros(1, 2, 3)).abs().sum().item()
        0.0
    """

    kind = "alpha"
    allow_one = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        # torch's layer never passes ``inplace`` on (its output is always a
        # new tensor); the same here, so code written for it sees no change
        if torch.jit.is_scripting():
            return F.feature_alpha_dropout(input, self.p, self.training)
        where = type(self).__name__
        return _alpha(where, input, self.p, self.training, False, self.generator, True)
