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

from dropkit._registry import register_dropout
from dropkit._validation import _fail, check_generator, check_p
from dropkit.kernels import draw_mask
from dropkit.nn._base import DropoutBase, check_tensor

#: SELU constants (Klambauer et al. 2017, eq. 14).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946
#: Value a dropped unit takes before the affine correction: ``-lambda * alpha``.
ALPHA_PRIME = -SELU_LAMBDA * SELU_ALPHA


def alpha_coefficients(p: float) -> tuple[float, float]:
    """Return the affine correction ``(a, b)`` of alpha dropout at rate ``p``.

    Args:
        p: Drop probability in ``[0, 1)``.

    Returns:
        ``a = ((1 - p)(1 + p alpha'^2))^(-1/2)`` and ``b = -a alpha' p``.

    Example:
        >>> [round(c, 4) for c in alpha_coefficients(0.1)]
        [0.9213, 0.162]
    """
    a = 1.0 / math.sqrt((1.0 - p) * (1.0 + p * ALPHA_PRIME**2))
    return a, -a * ALPHA_PRIME * p


def _alpha(
    where: str,
    x: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
    feature: bool,
) -> torch.Tensor:
    p = check_p(where, p)
    check_generator(where, generator)
    check_tensor(where, x)
    if feature and x.dim() < 2:
        raise _fail(
            ValueError,
            where,
            "an input of 2 or more dims (N, C, *)",
            tuple(x.shape),
            "Add the batch and channel dims, or use AlphaDropout for element-wise dropout.",
        )
    if not training or p == 0.0:
        return x
    # feature variant: one draw per (sample, channel), broadcast over the rest
    shape = (*x.shape[:2], *([1] * (x.dim() - 2))) if feature else tuple(x.shape)
    keep = (draw_mask(shape, p, like=x, generator=generator) != 0).to(x.dtype)
    a, b = alpha_coefficients(p)
    scale = keep * a  # a where kept, 0 where dropped
    shift = (1.0 - keep) * (a * ALPHA_PRIME) + b  # b where kept, a*alpha'+b where dropped
    if inplace:
        return x.mul_(scale).add_(shift)
    return torch.addcmul(shift, x, scale)


def alpha_dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Element-wise alpha dropout that keeps mean 0 and variance 1.

    Dropped elements become ``alpha'``; then ``a * d + b`` restores the moments
    (see the module docstring for ``a`` and ``b``).

    Args:
        x: Input, ideally SELU activations (mean 0, variance 1).
        p: Drop probability in ``[0, 1)``.
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
        ValueError: If ``p`` is outside ``[0, 1)``.

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
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Channel-wise alpha dropout: whole channels take ``alpha'``, then ``a * d + b``.

    Args:
        x: Input ``(N, C, *)``.
        p: Drop probability in ``[0, 1)``.
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
        ValueError: If ``p`` is outside ``[0, 1)`` or ``x`` has fewer than 2 dims.

    Example:
        >>> feature_alpha_dropout(torch.zeros(2, 3, 4), 0.2, training=False).shape
        torch.Size([2, 3, 4])
    """
    return _alpha("feature_alpha_dropout", x, p, training, inplace, generator, feature=True)


@register_dropout("alpha")
class AlphaDropout(DropoutBase):
    """Alpha dropout for SELU networks (element-wise).

    Keeps the self-normalising property: standard normal input gives output of
    mean 0 and variance 1. Use it instead of ``Dropout`` after ``nn.SELU``.

    Args:
        p: Drop probability in ``[0, 1)``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Example:
        >>> AlphaDropout(p=0.1)
        AlphaDropout(p=0.1, inplace=False)
    """

    kind = "alpha"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        where = type(self).__name__
        return _alpha(where, x, self.p, self.training, self.inplace, self.generator, False)


@register_dropout("feature_alpha")
class FeatureAlphaDropout(DropoutBase):
    """Channel-wise alpha dropout for SELU convolutional networks.

    Whole channels are set to ``alpha'``; the affine correction keeps mean 0 and
    variance 1 as in :class:`AlphaDropout`.

    Args:
        p: Drop probability in ``[0, 1)``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(N, C, *)``.
        - Output: same shape as input.

    Example:
        >>> FeatureAlphaDropout(p=0.1).eval()(torch.zeros(1, 2, 3)).abs().sum().item()
        0.0
    """

    kind = "alpha"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        where = type(self).__name__
        return _alpha(where, x, self.p, self.training, self.inplace, self.generator, True)
