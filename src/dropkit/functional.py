"""Functional forms of every dropout variant: ``import dropkit.functional as DF``.

Re-exports only; each function lives next to its module in ``dropkit.nn``.
Every function takes ``p`` (the drop probability), ``training`` and
``generator``, and is the identity when ``training=False`` or ``p == 0``.

One calling convention: the input, ``p``, ``training`` and variant options
(``scale_by_keep``, ``block_size``, ``batch_first``, ...) are positional;
``inplace`` and ``generator`` are keyword-only in every function, so
``DF.dropout(x, 0.1, True, g)`` is a ``TypeError`` instead of binding ``g`` to
``inplace``. This differs from ``torch.nn.functional.dropout(input, p,
training, inplace)``, which takes ``inplace`` positionally: write
``DF.dropout(x, p, training, inplace=True)``.
"""

from __future__ import annotations

from dropkit.nn.alpha import alpha_coefficients, alpha_dropout, feature_alpha_dropout
from dropkit.nn.attention import attention_dropout
from dropkit.nn.concrete import concrete_dropout
from dropkit.nn.drop_block import block_gamma, drop_block2d
from dropkit.nn.drop_path import drop_path, drop_path_rates
from dropkit.nn.dropout import dropout
from dropkit.nn.embedding import embedding_dropout
from dropkit.nn.gaussian import gaussian_dropout
from dropkit.nn.layer_drop import layer_drop
from dropkit.nn.locked import locked_dropout
from dropkit.nn.spatial import dropout1d, dropout2d, dropout3d
from dropkit.nn.weight_drop import drop_connect

__all__ = [
    "alpha_coefficients",
    "alpha_dropout",
    "attention_dropout",
    "block_gamma",
    "concrete_dropout",
    "drop_block2d",
    "drop_connect",
    "drop_path",
    "drop_path_rates",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "embedding_dropout",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "layer_drop",
    "locked_dropout",
]
