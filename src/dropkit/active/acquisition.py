"""Acquisition functions for active learning over MC-dropout predictions.

Every function maps an :class:`~dropkit.uncertainty.result.MCResult` (or samples
``(S, N, C)`` of class probabilities) to scores ``(N,)`` in float64, **higher =
acquire first**; :func:`top_k` turns scores into indices. Natural logs.

* ``bald``: mutual information ``H[E_s p_s] - E_s H[p_s]`` (Houlsby et al., 2011;
  Gal et al., 2017).
* ``max_entropy``: predictive entropy ``H[E_s p_s]`` (Shannon, 1948).
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
from typing import Any

import torch

from dropkit._validation import check_generator, check_int
from dropkit.metrics._checks import as_probs, as_tensor, check_finite
from dropkit.uncertainty.result import MCResult


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy over the last dim with ``0 log 0 = 0`` (natural log)."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def as_samples(caller: str, x: Any) -> torch.Tensor:
    """Return validated float64 class-probability samples ``(S, N, C)``.

    Accepts an ``MCResult`` that kept its samples, or a tensor ``(S, N, C)``.
    """
    if isinstance(x, MCResult):
        if x.samples is None:
            raise ValueError(
                f"{caller}: expected an MCResult with samples, but got one with samples=None. "
                "Call mc_predict(..., keep_samples=True)."
            )
        x = x.samples
    s = as_tensor(caller, x, "samples")
    if s.dim() != 3 or 0 in s.shape:
        raise ValueError(
            f"{caller}: expected samples of shape (S, N, C), but got {tuple(s.shape)}. "
            "Stack per-sample probabilities on dim 0."
        )
    check_finite(caller, s, "samples")
    as_probs(caller, s.reshape(-1, s.shape[-1]), "samples")  # each sample row a distribution
    return s


def _result_or_samples(caller: str, x: Any, field: str) -> torch.Tensor:
    """Use the MCResult's summary ``field`` when it has no samples, else recompute."""
    if isinstance(x, MCResult) and x.samples is None:
        value = getattr(x, field)
        if value is None:
            raise ValueError(
                f"{caller}: expected an MCResult with {field} or samples, but got neither. "
                "Use a classification result from mc_predict."
            )
        return value.double()
    return torch.empty(0)


def bald(x: Any) -> torch.Tensor:
    """BALD score: mutual information between the label and the model parameters.

    Args:
        x: ``MCResult`` or samples ``(S, N, C)``.

    Shape:
        - samples: ``(S, N, C)``; output ``(N,)``.

    Returns:
        ``H[E_s p_s] - E_s H[p_s]`` per input, float64, clamped at 0.
    """
    cached = _result_or_samples("bald", x, "mutual_information")
    if cached.numel():
        return cached
    s = as_samples("bald", x)
    return (entropy(s.mean(0)) - entropy(s).mean(0)).clamp_min(0)


def max_entropy(x: Any) -> torch.Tensor:
    """Predictive entropy ``H[E_s p_s]``; also accepts mean probabilities ``(N, C)``.

    Shape:
        - samples: ``(S, N, C)`` or ``(N, C)``; output ``(N,)``.
    """
    cached = _result_or_samples("max_entropy", x, "predictive_entropy")
    if cached.numel():
        return cached
    if isinstance(x, MCResult) and x.samples is not None:
        x = x.samples
    return entropy(as_probs("max_entropy", x))


def variation_ratio(x: Any) -> torch.Tensor:
    """``1 - mode count / S`` of the per-sample predicted classes.

    Shape:
        - samples: ``(S, N, C)``; output ``(N,)``.
    """
    cached = _result_or_samples("variation_ratio", x, "variation_ratio")
    if cached.numel():
        return cached
    s = as_samples("variation_ratio", x)
    votes = torch.nn.functional.one_hot(s.argmax(-1), s.shape[-1]).sum(0)  # (N, C)
    return 1.0 - votes.max(-1).values.double() / s.shape[0]


def margin(x: Any) -> torch.Tensor:
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


def mean_std(x: Any) -> torch.Tensor:
    """Mean over classes of the standard deviation of ``p_s`` over samples.

    Shape:
        - samples: ``(S, N, C)``; output ``(N,)``.
    """
    cached = _result_or_samples("mean_std", x, "std")
    if cached.numel():
        return cached.mean(-1)
    s = as_samples("mean_std", x)
    return s.std(0, unbiased=False).mean(-1)


def random(x: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
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
