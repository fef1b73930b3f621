"""Element-wise inverted Bernoulli dropout, a drop-in for ``torch.nn.Dropout``.

References:
    Hinton et al., "Improving neural networks by preventing co-adaptation of
    feature detectors", arXiv:1207.0580, 2012.
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 15, 2014.
"""

from __future__ import annotations

import torch

from dropkit._registry import register_dropout
from dropkit._validation import check_generator, check_p
from dropkit.kernels import bernoulli_dropout
from dropkit.nn._base import DropoutBase, check_tensor


def dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero each element with probability ``p`` and scale survivors by ``1/(1-p)``.

    Every element gets its own Bernoulli(``1 - p``) keep draw, so the expected
    output equals the input ("inverted" dropout: nothing to rescale at test
    time). The random work runs through :func:`dropkit.kernels.bernoulli_dropout`:
    ``p`` is quantised to a multiple of ``2**-16`` (see
    :func:`dropkit.kernels.effective_p`) and survivors are scaled by the
    quantised keep rate, so the expectation stays exact.

    Args:
        x: Input tensor.
        p: Drop probability in ``[0, 1]``; ``p = 1`` returns zeros.
        training: Apply dropout; when ``False`` the input is returned as is.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator`` for a reproducible mask.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Returns:
        The dropped-out tensor (``x`` itself when not training or ``p == 0``).

    Raises:
        TypeError: If ``p`` is not a float or ``x`` is not a floating tensor.
        ValueError: If ``p`` is outside ``[0, 1]`` or NaN.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> dropout(torch.ones(1000), p=0.5, generator=g).unique()
        tensor([0., 2.])
        >>> dropout(torch.ones(3), p=0.5, training=False)
        tensor([1., 1., 1.])
    """
    p = check_p("dropout", p, allow_one=True)
    check_generator("dropout", generator)
    check_tensor("dropout", x)
    if not training or p == 0.0:
        return x
    return bernoulli_dropout(x, p, inplace=inplace, generator=generator)


@register_dropout("dropout")
class Dropout(DropoutBase):
    """Inverted Bernoulli dropout; a drop-in replacement for ``torch.nn.Dropout``.

    Same constructor (``p=0.5, inplace=False``), same ``repr`` fields, and an
    empty ``state_dict``, so models saved with ``torch.nn.Dropout`` load into
    models built with this class and back. Adds an optional ``generator`` and
    validates ``p`` on every assignment. Use it wherever ``nn.Dropout`` fits:
    after activations of dense layers, on embeddings, before classifiers.

    Args:
        p: Drop probability in ``[0, 1]``.
        inplace: Write the result into the input tensor.
        generator: Optional ``torch.Generator`` for reproducible masks.

    Shape:
        - Input: any.
        - Output: same shape as input.

    Example:
        >>> m = Dropout(p=0.5)
        >>> m
        Dropout(p=0.5, inplace=False)
        >>> m.eval()(torch.ones(2))
        tensor([1., 1.])
    """

    kind = "element"
    allow_one = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        return dropout(x, self.p, self.training, self.inplace, self.generator)
