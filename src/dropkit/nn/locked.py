"""Locked (variational) dropout for sequences: one mask per sequence, shared over time.

Resampling a dropout mask at every time step injects noise that recurrent
layers accumulate; sampling one mask per sequence and reusing it at every step
is the variational-inference view of dropout in RNNs.

References:
    Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in
    Recurrent Neural Networks", NeurIPS 2016.
    Merity, Keskar & Socher, "Regularizing and Optimizing LSTM Language
    Models", ICLR 2018 (AWD-LSTM).
"""

from __future__ import annotations

import torch

from dropkit._registry import register_dropout
from dropkit._validation import check_flags, check_generator, check_p, check_rank
from dropkit.kernels import draw_mask
from dropkit.nn._base import DropoutBase, check_tensor


def _locked(
    caller: str,
    x: torch.Tensor,
    p: float,
    training: bool,
    batch_first: bool,
    inplace: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    p = check_p(caller, p, allow_one=True)
    check_generator(caller, generator)
    check_flags(caller, training=training, batch_first=batch_first, inplace=inplace)
    check_tensor(caller, x)
    check_rank(caller, x, (3,), "(N, L, C)" if batch_first else "(L, N, C)")
    if not training or p == 0.0:
        return x
    n, c = (x.shape[0], x.shape[2]) if batch_first else (x.shape[1], x.shape[2])
    shape = (n, 1, c) if batch_first else (1, n, c)  # broadcast over time
    mask = draw_mask(shape, p, like=x, generator=generator)
    return x.mul_(mask) if inplace else x * mask


def locked_dropout(
    x: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    batch_first: bool = False,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Drop the same features at every time step of each sequence.

    One Bernoulli(``1 - p``) keep mask of shape ``(N, C)`` is drawn per call
    and broadcast over the time axis; survivors are scaled by ``1/(1-p)``.

    Args:
        x: Sequence batch, ``(L, N, C)`` or ``(N, L, C)`` with ``batch_first``.
        p: Drop probability in ``[0, 1]``.
        training: Apply dropout; identity when ``False``.
        batch_first: Whether the batch axis comes first.
        inplace: Write the result into ``x``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(L, N, C)``, or ``(N, L, C)`` when ``batch_first``.
        - Output: same shape as input.

    Returns:
        The dropped-out tensor.

    Raises:
        ValueError: If ``x`` is not 3-D or ``p`` is out of range.
        TypeError: If ``p`` is not a float.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = locked_dropout(torch.ones(5, 2, 8), p=0.5, generator=g)
        >>> bool((y == y[:1]).all())  # the same mask at every step
        True
    """
    return _locked("locked_dropout", x, p, training, batch_first, inplace, generator)


@register_dropout("locked")
class LockedDropout(DropoutBase):
    """Variational dropout for sequences: one mask per sequence, shared over time.

    Place it between recurrent layers, on embeddings and on RNN outputs (the
    AWD-LSTM recipe). ``batch_first`` selects the layout, as in ``nn.LSTM``.

    Args:
        p: Drop probability in ``[0, 1]``.
        batch_first: Whether input is ``(N, L, C)`` instead of ``(L, N, C)``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(L, N, C)``, or ``(N, L, C)`` when ``batch_first``.
        - Output: same shape as input.

    Example:
        >>> LockedDropout(p=0.3)
        LockedDropout(p=0.3, batch_first=False)
    """

    kind = "locked"
    allow_one = True

    def __init__(
        self,
        p: float = 0.5,
        batch_first: bool = False,
        inplace: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, generator)
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        where = type(self).__name__
        return _locked(
            where, x, self.p, self.training, self.batch_first, self.inplace, self.generator
        )

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        inplace = ", inplace=True" if self.inplace else ""
        return f"p={self.p}, batch_first={self.batch_first}{inplace}"
