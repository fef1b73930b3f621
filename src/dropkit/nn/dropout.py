"""Element-wise inverted Bernoulli dropout, a drop-in for ``torch.nn.Dropout``.

References:
    Hinton et al., "Improving neural networks by preventing co-adaptation of
    feature detectors", arXiv:1207.0580, 2012.
    Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 15, 2014.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dropkit._registry import register_dropout
from dropkit._validation import check_flags, check_generator, check_p
from dropkit.kernels import bernoulli_dropout
from dropkit.nn._base import DropoutBase, check_droppable, check_is_tensor, drop_all


def _dropout(
    caller: str,
    x: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    p = check_p(caller, p, allow_one=True)
    check_generator(caller, generator)
    check_flags(caller, training=training, inplace=inplace)
    check_is_tensor(caller, x)
    # torch.nn.Dropout's order: identity (the input object itself) first,
    # then p == 1 (any dtype), and only a real mask needs a floating dtype
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if p == 1.0:
        return drop_all(x, inplace)
    check_droppable(caller, x)
    return bernoulli_dropout(x, p, inplace=inplace, generator=generator)


def dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    *,
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
        The dropped-out tensor in the memory layout of ``x`` (``x`` itself
        when not training, ``p == 0`` or ``x`` is empty, as in torch; a new
        tensor for any other ``p``, even one that quantises to 0, unless
        ``inplace``).

    Raises:
        TypeError: If ``p`` is not a float or ``x`` is not a tensor; in
            training with ``0 < p < 1``, if ``x`` is not a real floating
            tensor (a :class:`~dropkit.nn._base.DropoutDTypeError`, also a
            ``RuntimeError``, or for complex ``x`` a
            :class:`~dropkit.nn._base.DropoutComplexError`, also a
            ``NotImplementedError``, as torch raises).
        ValueError: If ``p`` is outside ``[0, 1]`` or NaN.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> dropout(torch.ones(1000), p=0.5, generator=g).unique()
        tensor([0., 2.])
        >>> dropout(torch.ones(3), p=0.5, training=False)
        tensor([1., 1., 1.])
    """
    return _dropout("dropout", x, p, training, inplace, generator)


@register_dropout("dropout")
class Dropout(DropoutBase, nn.Dropout):
    """Inverted Bernoulli dropout; a drop-in replacement for ``torch.nn.Dropout``.

    A subclass of ``torch.nn.Dropout`` (tools that find dropout by type find
    it), with the same constructor (``p=0.5, inplace=False``), ``repr`` and
    empty ``state_dict``, so models saved with ``torch.nn.Dropout`` load into
    models built with this class and back. Outputs keep the input's memory
    layout. Adds an optional ``generator`` and validates ``p`` on every
    assignment. Under ``torch.jit.script`` it runs ``F.dropout`` (TorchScript
    cannot compile the kernel); the README lists every difference from
    torch's layer. Use it wherever ``nn.Dropout`` fits: after activations of
    dense layers, on embeddings, before classifiers.

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

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        if torch.jit.is_scripting():
            return F.dropout(input, self.p, self.training, self.inplace)
        where = type(self).__name__
        return _dropout(where, input, self.p, self.training, self.inplace, self.generator)
