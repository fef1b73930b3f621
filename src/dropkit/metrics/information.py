"""Predictive entropy and mutual information (BALD): the one implementation.

For class probabilities ``p_s`` from ``S`` stochastic passes (MC dropout, an
ensemble, posterior draws), the predictive entropy ``H[E_s p_s]`` splits into
the expected entropy ``E_s H[p_s]`` (aleatoric) and the mutual information
between the label and the model parameters (epistemic, the BALD score):
``I = H[E_s p_s] - E_s H[p_s]``. Natural logs; ``xlogy`` makes
``0 log 0 = 0`` exactly. :class:`~dropkit.uncertainty.result.MCResult`, the
streaming accumulator, the acquisition functions (``bald`` and
``max_entropy`` are their names there), BatchBALD and the baselines all call
these functions.

References:
    Shannon, "A Mathematical Theory of Communication", 1948.
    Houlsby, Huszar, Ghahramani, Lengyel, "Bayesian Active Learning for
    Classification and Preference Learning", arXiv:1112.5745, 2011.
    Gal, "Uncertainty in Deep Learning", PhD thesis, 2016.
"""

from __future__ import annotations

import torch

from dropkit._validation import TensorLike
from dropkit.metrics._checks import MCResultLike, as_probs, as_tensor, check_finite

__all__ = [
    "MCResultLike",
    "as_samples",
    "cached",
    "entropy",
    "entropy_terms",
    "mutual_information",
    "predictive_entropy",
]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy over the last dim with ``0 log 0 = 0`` (natural log).

    Unvalidated: the primitive under every entropy in dropkit.

    Shape:
        - probs: ``(*, C)``; output ``(*)``.

    Example:
        >>> round(entropy(torch.tensor([0.5, 0.5])).item(), 6)
        0.693147
    """
    return -torch.special.xlogy(probs, probs).sum(-1)


def entropy_terms(
    mean: torch.Tensor, expected_entropy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(H[mean], H[mean] - expected_entropy)``, the MI clamped at 0.

    The decomposition step shared by :meth:`MCResult.from_samples
    <dropkit.uncertainty.result.MCResult.from_samples>` and the streaming
    accumulator (which only has ``E_s H[p_s]`` as a running sum). The clamp
    removes rounding below 0; the true value is never negative (Jensen).

    Shape:
        - mean: ``(N, C)``; expected_entropy: ``(N,)``; outputs ``(N,)``.
    """
    pe = entropy(mean)
    return pe, (pe - expected_entropy).clamp_min(0)


def _is_result(x: object) -> bool:
    # Matched by fields (MCResultLike): metrics never import uncertainty/.
    return hasattr(x, "task") and hasattr(x, "samples") and hasattr(x, "predictive_entropy")


def as_samples(caller: str, x: object) -> torch.Tensor:
    """Return validated float64 class-probability samples ``(S, N, C)``.

    Accepts an ``MCResult`` that kept its samples, or a tensor ``(S, N, C)``.

    Raises:
        ValueError: If the result kept no samples, the shape is not
            ``(S, N, C)``, or a row is not a distribution.
    """
    if _is_result(x):
        samples = getattr(x, "samples")  # noqa: B009 (duck-typed result)
        if samples is None:
            raise ValueError(
                f"{caller}: expected an MCResult with samples, but got one with samples=None. "
                "Call mc_predict(..., keep_samples=True)."
            )
        x = samples
    s = as_tensor(caller, x, "samples")
    if s.dim() != 3 or 0 in s.shape:
        raise ValueError(
            f"{caller}: expected samples of shape (S, N, C), but got {tuple(s.shape)}. "
            "Stack per-sample probabilities on dim 0."
        )
    check_finite(caller, s, "samples")
    as_probs(caller, s.reshape(-1, s.shape[-1]), "samples")  # each sample row a distribution
    return s


def cached(caller: str, x: object, field: str) -> torch.Tensor | None:
    """Return an ``MCResult``'s summary ``field`` (float64) when it kept no samples.

    ``None`` means: recompute from the samples.

    Raises:
        ValueError: If the result has neither the field nor samples.
    """
    if not _is_result(x) or getattr(x, "samples") is not None:  # noqa: B009
        return None
    value = getattr(x, field, None)
    if value is None:
        raise ValueError(
            f"{caller}: expected an MCResult with {field} or samples, but got neither. "
            "Use a classification result from mc_predict."
        )
    return value.double()


def _predictive_entropy(caller: str, x: object) -> torch.Tensor:
    known = cached(caller, x, "predictive_entropy")
    if known is not None:
        return known
    if _is_result(x):
        x = getattr(x, "samples")  # noqa: B009
    return entropy(as_probs(caller, x))


def _mutual_information(caller: str, x: object) -> torch.Tensor:
    known = cached(caller, x, "mutual_information")
    if known is not None:
        return known
    s = as_samples(caller, x)
    return entropy_terms(s.mean(0), entropy(s).mean(0))[1]


def predictive_entropy(x: MCResultLike | TensorLike) -> torch.Tensor:
    """Predictive entropy ``H[E_s p_s]`` per input, float64.

    Also the acquisition function ``dropkit.active.max_entropy``.

    Args:
        x: An ``MCResult``, samples ``(S, N, C)`` or mean probabilities ``(N, C)``.

    Shape:
        - x: ``(S, N, C)`` or ``(N, C)``; output ``(N,)``.

    Returns:
        Natural-log entropies of the mean prediction.

    Raises:
        ValueError: If ``x`` is not a (stack of) probability matrices.

    Example:
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident, opposite samples
        >>> round(predictive_entropy(p).item(), 6)
        0.693147
    """
    return _predictive_entropy("predictive_entropy", x)


def mutual_information(x: MCResultLike | TensorLike) -> torch.Tensor:
    """Mutual information ``H[E_s p_s] - E_s H[p_s]`` per input (the BALD score).

    The epistemic part of the predictive entropy: high where the samples
    disagree. Also the acquisition function ``dropkit.active.bald``.

    Args:
        x: An ``MCResult`` or samples ``(S, N, C)``.

    Shape:
        - x: ``(S, N, C)``; output ``(N,)``.

    Returns:
        float64 scores, clamped at 0.

    Raises:
        ValueError: If ``x`` is not ``(S, N, C)`` probabilities, or an
            ``MCResult`` without samples or summaries.

    Example:
        >>> p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # all of it is disagreement
        >>> round(mutual_information(p).item(), 6)
        0.693147
    """
    return _mutual_information("mutual_information", x)
