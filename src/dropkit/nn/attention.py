"""Attention dropout for hand-written attention code.

``torch.nn.functional.scaled_dot_product_attention(dropout_p=p)`` drops entries
of the attention probabilities ``softmax(Q K^T * scale + mask)`` with
inverted Bernoulli dropout before multiplying by ``V``. :func:`attention_dropout`
does exactly that step, with a ``generator`` and a module whose rate
``find_dropout`` can see and change.

References:
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (dropout on
    attention weights).
"""

from __future__ import annotations

import torch

from dropkit._registry import register_dropout
from dropkit._validation import _fail, check_flags, check_generator, check_p
from dropkit.kernels import bernoulli_dropout
from dropkit.nn._base import DropoutBase, check_tensor


def _attention(
    caller: str,
    attn: torch.Tensor,
    p: float,
    training: bool,
    inplace: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    p = check_p(caller, p, allow_one=True)
    check_generator(caller, generator)
    check_flags(caller, training=training, inplace=inplace)
    check_tensor(caller, attn, "attn_probs")
    if attn.dim() < 2:
        raise _fail(
            ValueError,
            caller,
            "attention probabilities of 2 or more dims (..., L, S)",
            tuple(attn.shape),
            "Apply it to the softmax output of shape (..., L, S).",
        )
    if not training or p == 0.0:
        return attn
    return bernoulli_dropout(attn, p, inplace=inplace, generator=generator)


def attention_dropout(
    attn_probs: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    *,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Drop attention probabilities as ``scaled_dot_product_attention(dropout_p=p)`` does.

    Each query-key weight is zeroed independently with probability ``p`` and
    survivors are scaled by ``1/(1-p)``; rows no longer sum to one, but their
    expectation is the undropped row. Apply it after the softmax and before
    multiplying by the values.

    Args:
        attn_probs: Attention probabilities (after softmax).
        p: Drop probability in ``[0, 1]``.
        training: Apply dropout; identity when ``False``.
        inplace: Write the result into ``attn_probs``.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(..., L, S)``, e.g. ``(N, heads, L, S)``.
        - Output: same shape as input.

    Returns:
        The dropped attention weights.

    Raises:
        TypeError: If ``p`` is not a float.
        ValueError: If ``p`` is out of range or the input has fewer than 2 dims.

    Example:
        >>> q = k = v = torch.ones(1, 2, 3, 4)
        >>> probs = (q @ k.transpose(-2, -1) / 2).softmax(-1)
        >>> out = attention_dropout(probs, p=0.1, training=False) @ v
        >>> torch.allclose(out, torch.nn.functional.scaled_dot_product_attention(q, k, v))
        True
    """
    return _attention("attention_dropout", attn_probs, p, training, inplace, generator)


@register_dropout("attention")
class AttentionDropout(DropoutBase):
    """Dropout on attention probabilities (the ``dropout_p`` of fused attention).

    Use it in custom attention modules in place of a bare ``nn.Dropout`` on the
    softmax output, so tools that look for dropout sites see the attention
    dropout as such (kind ``"attention"``).

    Args:
        p: Drop probability in ``[0, 1]``.
        inplace: Write the result into the input.
        generator: Optional ``torch.Generator``.

    Shape:
        - Input: ``(..., L, S)``.
        - Output: same shape as input.

    Example:
        >>> AttentionDropout(p=0.1)
        AttentionDropout(p=0.1, inplace=False)
    """

    kind = "attention"
    allow_one = True

    def __init__(
        self,
        p: float = 0.1,
        inplace: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(p, inplace, generator)

    def forward(self, attn_probs: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        where = type(self).__name__
        return _attention(where, attn_probs, self.p, self.training, self.inplace, self.generator)
