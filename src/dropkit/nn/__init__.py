"""Dropout modules, one family per file, each next to its functional form.

Importing this package registers every variant with :func:`dropkit.create_dropout`.
"""

from __future__ import annotations

from dropkit.nn._base import DropoutBase
from dropkit.nn.alpha import AlphaDropout, FeatureAlphaDropout
from dropkit.nn.attention import AttentionDropout
from dropkit.nn.concrete import ConcreteDropout
from dropkit.nn.drop_block import BlockNorm, DropBlock2d
from dropkit.nn.drop_path import DropPath
from dropkit.nn.dropout import Dropout
from dropkit.nn.embedding import EmbeddingDropout
from dropkit.nn.gaussian import GaussianDropout
from dropkit.nn.head import ClassifierHead
from dropkit.nn.layer_drop import LayerDrop
from dropkit.nn.locked import LockedDropout
from dropkit.nn.spatial import Dropout1d, Dropout2d, Dropout3d
from dropkit.nn.weight_drop import WeightDrop

__all__ = [
    "AlphaDropout",
    "AttentionDropout",
    "BlockNorm",
    "ClassifierHead",
    "ConcreteDropout",
    "DropBlock2d",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "DropoutBase",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "LayerDrop",
    "LockedDropout",
    "WeightDrop",
]
