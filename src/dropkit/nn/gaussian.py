"""Gaussian (multiplicative-noise) dropout.

Multiplying by ``N(1, p / (1 - p))`` noise matches the mean and variance of the
inverted Bernoulli multiplier ``Bernoulli(1 - p) / (1 - p)`` while keeping
every unit active, which the original dropout paper found to work as well or
better.

References:
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 15, 2014 (section 10, multiplicative Gaussian noise).
    Wang & Manning, "Fast dropout training", ICML 2013.
"""

from __future__ import annotations

import math

import torch

from dropkit._registry import register_dropout
from dropkit._validation import check_flags, check_generator, check_p
from dropkit.nn._base import DropoutBase, check_tensor


def _gaussian(
    caller: str,
    x: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    p = check_p(caller, p)
    check_generator(caller, generator)
    check_flags(caller, training=training, inplace=inplace)
    check_tensor(caller, x)
    if not training or p == 0.0:
        return x
    # Normal noise has no Bernoulli kernel to route through; draw it directly.
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    noise.mul_(math.sqrt(p / (1.0 - p))).add_(1.0)  # N(1, p / (1 - p))
    return x.mul_(noise) if inplace else x * noise


def gaussian_dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Multiply every element by independent ``N(1, p / (1 - p))`` noise.

    The multiplier has the same mean (1) and variance (``p / (1 - p)``) as the
    inverted Bernoulli dropout multiplier at rate ``p``.

    Args:
        x: Input tensor.
        p: The equivalent drop probability in ``[0, 1)``.
        training: Apply the noise; identity when ``False``.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Returns:
        The noisy tensor.

    Raises:
        TypeError: If ``p`` is not a float.
        ValueError: If ``p`` is outside ``[0, 1)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = gaussian_dropout(torch.ones(100_000), p=0.5, generator=g)
        >>> round(y.mean().item(), 1), round(y.var().item(), 1)
        (1.0, 1.0)
    """
    return _gaussian("gaussian_dropout", x, p, training, inplace, generator)


@register_dropout("gaussian")
class GaussianDropout(DropoutBase):
    """Multiplicative Gaussian noise ``N(1, p / (1 - p))`` (Gaussian dropout).

    A smooth alternative to Bernoulli dropout with the same first two moments;
    no unit is ever zeroed, which suits regression heads and layers where exact
    zeros hurt.

    Args:
        p: The equivalent drop probability in ``[0, 1)``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Example:
        >>> GaussianDropout(p=0.2)
        GaussianDropout(p=0.2, inplace=False)
    """

    kind = "gaussian"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        where = type(self).__name__
        return _gaussian(where, x, self.p, self.training, self.inplace, self.generator)
