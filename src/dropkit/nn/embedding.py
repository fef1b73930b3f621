"""Embedding dropout: drop whole rows (words) of an embedding matrix.

Dropping a row removes every occurrence of that token in the batch, which is
dropout on the one-hot input and regularises rare-word embeddings; surviving
rows are scaled by ``1/(1-p)``.

References:
    Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in
    Recurrent Neural Networks", NeurIPS 2016 (word dropout on embeddings).
    Merity, Keskar & Socher, "Regularizing and Optimizing LSTM Language
    Models", ICLR 2018 (AWD-LSTM).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dropkit._registry import register_dropout
from dropkit._validation import _fail, check_flags, check_generator, check_int, check_p
from dropkit.kernels import draw_mask
from dropkit.nn._base import DropoutBase, check_tensor


def _check_ids(caller: str, ids: Any, vocab: int) -> None:
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex():
        got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise _fail(
            TypeError,
            caller,
            "ids to be an integer tensor of token ids",
            got,
            "Pass torch.as_tensor(ids, dtype=torch.long) (ids.long() for a float tensor).",
        )
    if ids.dtype == torch.bool:
        raise _fail(TypeError, caller, "ids to be an integer tensor", ids.dtype, "Pass ids.long().")
    if ids.numel() and not ids.is_meta:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab:
            raise _fail(
                ValueError,
                caller,
                f"ids in [0, {vocab}) (the weight has {vocab} rows)",
                f"ids in [{lo}, {hi}]",
                "Map tokens into the vocabulary, or build the embedding with more rows.",
            )


def _embedding(
    caller: str,
    weight: torch.Tensor,
    ids: torch.Tensor,
    p: float,
    training: bool,
    generator: torch.Generator | None,
    **kwargs: Any,
) -> torch.Tensor:
    p = check_p(caller, p, allow_one=True)
    check_generator(caller, generator)
    check_flags(caller, training=training)
    check_tensor(caller, weight, "weight")
    if weight.dim() != 2:
        raise _fail(
            ValueError,
            caller,
            "a 2-D weight (num_embeddings, embedding_dim)",
            tuple(weight.shape),
            "Pass the embedding matrix, e.g. embedding.weight.",
        )
    _check_ids(caller, ids, weight.shape[0])
    out = F.embedding(ids, weight, **kwargs)
    if not training or p == 0.0:
        return out
    # One draw per vocabulary row; gathering it by id is the same as masking
    # the whole matrix, without touching rows the batch does not use.
    row_mask = draw_mask((weight.shape[0],), p, like=weight, generator=generator)
    return out * row_mask[ids].unsqueeze(-1)


def embedding_dropout(
    weight: torch.Tensor,
    ids: torch.Tensor,
    p: float = 0.1,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Look up ``ids`` in ``weight`` with whole rows dropped with probability ``p``.

    Equivalent to ``F.embedding(ids, weight * mask)`` with one Bernoulli
    (``1 - p``) keep draw per row, scaled by ``1/(1-p)``: a dropped token is zero
    at every position where it occurs in the batch.

    Args:
        weight: Embedding matrix ``(V, D)``.
        ids: Integer token ids of any shape.
        p: Probability of dropping a row, in ``[0, 1]``.
        training: Apply dropout; a plain lookup when ``False``.
        generator: Optional ``torch.Generator``.
        **kwargs: Passed to ``torch.nn.functional.embedding`` (``padding_idx``,
            ``max_norm``, ...).

    Shape:
        - Input: ``ids`` of any shape ``(*)``; ``weight`` ``(V, D)``.
        - Output: ``(*, D)``.

    Returns:
        The embeddings.

    Raises:
        TypeError: If ``p`` is not a float or ``ids`` not an integer tensor.
        ValueError: If ``p`` is out of range, ``weight`` is not 2-D or an id is
            outside ``[0, V)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.ones(4, 3)
        >>> out = embedding_dropout(w, torch.tensor([[1, 1, 1]]), p=0.5, generator=g)
        >>> bool((out == out[:, :1]).all())  # token 1 is kept or dropped everywhere
        True
    """
    return _embedding("embedding_dropout", weight, ids, p, training, generator, **kwargs)


@register_dropout("embedding")
class EmbeddingDropout(DropoutBase):
    """An ``nn.Embedding`` whose rows are dropped whole in training.

    Wraps an existing ``nn.Embedding`` (sharing its weight) or builds one from
    ``num_embeddings`` and ``embedding_dim``. The weight is registered directly
    on this module, so ``state_dict`` keys are those of ``nn.Embedding``
    (``weight``): ``model.emb = EmbeddingDropout(model.emb, p=0.1)`` keeps the
    model's checkpoints loadable both ways.

    Args:
        embedding: The embedding to wrap. If ``None``, ``num_embeddings`` and
            ``embedding_dim`` build a new ``nn.Embedding``.
        p: Probability of dropping a row, in ``[0, 1]``.
        generator: Optional ``torch.Generator``.
        num_embeddings: Vocabulary size when no ``embedding`` is given.
        embedding_dim: Embedding size when no ``embedding`` is given.
        **kwargs: Passed to ``nn.Embedding`` when building one.

    Shape:
        - Input: integer ids ``(*)``.
        - Output: ``(*, D)``.

    Raises:
        TypeError: If neither an ``nn.Embedding`` nor both sizes are given.
        ValueError: If a size is below 1; at forward, if an id is outside
            ``[0, num_embeddings)``.

    Example:
        >>> emb = EmbeddingDropout(num_embeddings=10, embedding_dim=4, p=0.1)
        >>> emb
        EmbeddingDropout(10, 4, p=0.1)
        >>> list(emb.state_dict())
        ['weight']
    """

    kind = "embedding"
    allow_one = True

    def __init__(
        self,
        embedding: nn.Embedding | None = None,
        p: float = 0.1,
        generator: torch.Generator | None = None,
        *,
        num_embeddings: int | None = None,
        embedding_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(p, False, generator)
        if embedding is None and num_embeddings is not None and embedding_dim is not None:
            num_embeddings = check_int("EmbeddingDropout", num_embeddings, "num_embeddings")
            embedding_dim = check_int("EmbeddingDropout", embedding_dim, "embedding_dim")
            embedding = nn.Embedding(num_embeddings, embedding_dim, **kwargs)
        if not isinstance(embedding, nn.Embedding):
            raise _fail(
                TypeError,
                "EmbeddingDropout",
                "an nn.Embedding to wrap",
                type(embedding).__name__,
                "Pass embedding=nn.Embedding(...) or num_embeddings= and embedding_dim=.",
            )
        self.weight = embedding.weight
        self.num_embeddings = embedding.num_embeddings
        self.embedding_dim = embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        self.max_norm = embedding.max_norm
        self.norm_type = embedding.norm_type
        self.scale_grad_by_freq = embedding.scale_grad_by_freq
        self.sparse = embedding.sparse

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Apply the variant to the input (see the class docstring)."""
        return _embedding(
            type(self).__name__,
            self.weight,
            ids,
            self.p,
            self.training,
            self.generator,
            padding_idx=self.padding_idx,
            max_norm=self.max_norm,
            norm_type=self.norm_type,
            scale_grad_by_freq=self.scale_grad_by_freq,
            sparse=self.sparse,
        )

    def to_embedding(self) -> nn.Embedding:
        """Return a plain ``nn.Embedding`` sharing this module's weight."""
        emb = nn.Embedding(
            self.num_embeddings,
            self.embedding_dim,
            padding_idx=self.padding_idx,
            max_norm=self.max_norm,
            norm_type=self.norm_type,
            scale_grad_by_freq=self.scale_grad_by_freq,
            sparse=self.sparse,
            _weight=self.weight.data,
        )
        emb.weight = self.weight
        return emb

    def extra_repr(self) -> str:
        """Return the fields shown in the module's ``repr``."""
        return f"{self.num_embeddings}, {self.embedding_dim}, p={self.p}"
