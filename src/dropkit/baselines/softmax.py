"""Deterministic softmax baseline: one eval-mode forward pass, dropout off.

The maximum softmax probability is the classic OOD baseline of Hendrycks and
Gimpel (2017); the result has ``S = 1`` so its mutual information is 0.

References:
    Hendrycks, Gimpel (2017). A baseline for detecting misclassified and
    out-of-distribution examples in neural networks. ICLR.
"""

from __future__ import annotations

import torch
from torch import nn

from dropkit.baselines._common import batched_logits
from dropkit.uncertainty.result import MCResult


def softmax_predict(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    batch_size: int | None = None,
    keep_samples: bool = False,
) -> MCResult:
    """Predict with dropout off (every module in eval mode, flags restored after).

    Softmax is taken in float64 so confident predictions don't underflow to 0.

    Args:
        model: Classifier returning logits ``(N, C)``.
        inputs: Input batch ``(N, ...)``.
        batch_size: Chunk size for the forward passes (all at once if ``None``).
        keep_samples: Store the ``(1, N, C)`` probabilities on the result.

    Shape:
        - inputs: ``(N, ...)``.
        - result.mean: ``(N, C)``.

    Returns:
        An :class:`MCResult` with one sample; ``extras`` holds ``method`` and
        ``forward_passes`` (per input).
    """
    from dropkit._validation import check_bool

    check_bool("softmax_predict", keep_samples, "keep_samples")
    logits = batched_logits("softmax_predict", model, inputs, batch_size)
    probs = torch.softmax(logits.double(), -1)
    result = MCResult.from_samples(probs.unsqueeze(0), keep_samples=keep_samples)
    result.extras.update(method="softmax", forward_passes=1)
    return result
