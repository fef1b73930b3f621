"""Active learning: acquisition functions over MC results and the pool loop.

Scores are float64, higher = acquire first. :func:`batch_bald` chooses a batch
greedily from joint samples (consistent masks); :func:`run_active_learning`
retrains, scores the pool in streamed batches and records the learning curve.
"""

from __future__ import annotations

from dropkit.active.acquisition import (
    ACQUISITIONS,
    bald,
    margin,
    max_entropy,
    mean_std,
    random,
    top_k,
    variation_ratio,
)
from dropkit.active.batch_bald import BatchBALDResult, batch_bald
from dropkit.active.loop import ActiveLearningResult, balanced_initial, run_active_learning

__all__ = [
    "ACQUISITIONS",
    "ActiveLearningResult",
    "BatchBALDResult",
    "bald",
    "balanced_initial",
    "batch_bald",
    "margin",
    "max_entropy",
    "mean_std",
    "random",
    "run_active_learning",
    "top_k",
    "variation_ratio",
]
