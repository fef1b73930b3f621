"""Acquisition functions for active learning over MC-dropout predictions.

Every function maps an :class:`~dropkit.uncertainty.result.MCResult` (or samples
``(S, N, C)`` of class probabilities) to scores ``(N,)`` in float64, **higher =
acquire first**; :func:`top_k` turns scores into indices. Natural logs.

* ``bald``: mutual information ``H[E_s p_s] - E_s H[p_s]`` (Houlsby et al., 2011;
  Gal et al., 2017); an alias of :func:`dropkit.metrics.mutual_information`.
* ``max_entropy``: predictive entropy ``H[E_s p_s]`` (Shannon, 1948); an alias
  of :func:`dropkit.metrics.predictive_entropy`.
* ``variation_ratio``: ``1 - (count of the modal class over samples) / S``
  (Freeman, 1965).
* ``margin``: ``1 - (p_(1) - p_(2))`` of the mean probabilities, so the smallest
  margin scores highest (Scheffer et al., 2001).
* ``mean_std``: mean over classes of the population std over samples
  (Kampffmeyer et al., 2016).
* ``random``: i.i.d. uniform scores from a seeded generator.

References:
    Houlsby, Huszar, Ghahramani, Lengyel (2011). Bayesian active learning for
    classification and preference learning. arXiv:1112.5745.
    Gal, Islam, Ghahramani (2017). Deep Bayesian active learning with image
    data. ICML.
    Kampffmeyer, Salberg, Jenssen (2016). Semantic segmentation of small
    objects and modeling of uncertainty in urban remote sensing images using
    deep convolutional neural networks. CVPR workshops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dropkit._validation import TensorLike, check_generator, check_int
from dropkit.metrics._checks import as_probs, as_tensor
from dropkit.metrics.information import (
    _mutual_information,
    _predictive_entropy,
    as_samples,
    cached,
    entropy,
)
from dropkit.uncertainty.result import MCResult

__all__ = [
    "ACQUISITIONS",
    "as_samples",
    "bald",
    "entropy",
    "margin",
    "max_entropy",
    "mean_std",
    "random",
    "top_k",
    "variation_ratio",
]


def bald(x: MCResult | TensorLike) -> torch.Tensor:
    """BALD score: alias of :func:`dropkit.metrics.mutual_information`.

    The acquisition name of the mutual information between the label and the
    model parameters; errors name ``bald``.

    Args:
        x: ``MCResult`` or samples ``(S, N, C)``.

    Shape:
        - samples: ``(S, N, C)``; output ``(N,)``.

    Returns:
        ``H[E_s p_s] - E_s H[p_s]`` per input, float64, clamped at 0.
    """
    return _mutual_information("bald", x)


def max_entropy(x: MCResult | TensorLike) -> torch.Tensor:
    """Predictive entropy: alias of :func:`dropkit.metrics.predictive_entropy`.

    ``H[E_s p_s]``; also accepts mean probabilities ``(N, C)``. Errors name
    ``max_entropy``.

    Shape:
        - samples: ``(S, N, C)`` or ``(N, C)``; output ``(N,)``.
    """
    return _predictive_entropy("max_entropy", x)


def variation_ratio(x: MCResult | TensorLike) -> torch.Tensor:
    """``1 - mode count / S`` of the per-sample predicted classes.

    Shape:
        - samples: ``(S, N, C)``; output ``(N,)``.
    """
    known = cached("variation_ratio", x, "variation_ratio")
    if known is not None:
        return known
    s = as_samples("variation_ratio", x)
    votes = torch.nn.functional.one_hot(s.argmax(-1), s.shape[-1]).sum(0)  # (N, C)
    return 1.0 - votes.max(-1).values.double() / s.shape[0]


def margin(x: MCResult | TensorLike) -> torch.Tensor:
    """``1 - (p_(1) - p_(2))`` of the mean probabilities (smallest margin first).

    Shape:
        - samples: ``(S, N, C)`` or ``(N, C)``; output ``(N,)``.
    """
    if isinstance(x, MCResult):
        x = x.samples if x.samples is not None else x.probs
    p = as_probs("margin", x)
    if p.shape[1] < 2:
        return torch.ones(p.shape[0], dtype=torch.float64)
    top = p.topk(2, dim=-1).values
    return 1.0 - (top[:, 0] - top[:, 1])


def mean_std(x: MCResult | TensorLike) -> torch.Tensor:
    """Mean over classes of the standard deviation of ``p_s`` over samples.

    Shape:
        - samples: ``(S, N, C)``; output ``(N,)``.
    """
    known = cached("mean_std", x, "std")
    if known is not None:
        return known.mean(-1)
    s = as_samples("mean_std", x)
    return s.std(0, unbiased=False).mean(-1)


def random(x: MCResult | TensorLike, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random scores ``(N,)`` (the random-acquisition baseline).

    Args:
        x: ``MCResult``, samples ``(S, N, C)`` or probabilities ``(N, C)``; only
            ``N`` is used.
        generator: Seeded source of randomness.

    Shape:
        - output: ``(N,)``.
    """
    check_generator("random", generator)
    if isinstance(x, MCResult):
        n = x.mean.shape[0]
    else:
        t = as_tensor("random", x, "x")
        n = t.shape[-2] if t.dim() >= 2 else t.shape[0]
    return torch.rand(n, generator=generator, dtype=torch.float64)


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores, ties broken by the lower index.

    Shape:
        - scores: ``(N,)``; output ``(min(k, N),)`` int64.
    """
    k = check_int("top_k", k, "k")
    order = torch.argsort(-scores.double(), stable=True)
    return order[:k]


#: Name -> score function of the single-point acquisition functions.
ACQUISITIONS: dict[str, Callable[..., torch.Tensor]] = {
    "bald": bald,
    "max_entropy": max_entropy,
    "variation_ratio": variation_ratio,
    "margin": margin,
    "mean_std": mean_std,
    "random": random,
}
