"""Distances between two predictives: how close an approximation is to a reference.

Classification (Izmailov et al., 2021, with HMC as the reference):

* ``top1_agreement``: fraction of inputs where both predictives pick the same
  class (``argmax``; ties go to the lowest index, as ``torch.argmax``).
* ``total_variation``: ``mean_n 0.5 sum_c |p_nc - q_nc|``, in ``[0, 1]``.

Regression, with each predictive moment-matched to a Gaussian per output
``N(mean, var)`` (a mixture such as MC dropout's is replaced by the Gaussian with
its mean and total variance):

* ``gaussian_w2``: ``mean_n sqrt((m_n - m'_n)^2 + (s_n - s'_n)^2)``, the
  Wasserstein-2 distance between one-dimensional Gaussians, averaged.
* ``std_correlation``: Pearson correlation of the two predictive standard
  deviations over inputs (does the approximation know *where* it is unsure?).

Every computation is float64.

References:
    Izmailov, Vikram, Hoffman, Wilson (2021). What are Bayesian neural network
    posteriors really like? ICML.
    Givens, Shortt (1984). A class of Wasserstein metrics for probability
    distributions. Michigan Math. J.
"""

from __future__ import annotations

import torch

from dropkit._validation import TensorLike
from dropkit.metrics._checks import ProbsLike, as_probs, as_tensor, check_finite, check_same_shape


def _probs_pair(
    caller: str, probs: ProbsLike, reference: ProbsLike
) -> tuple[torch.Tensor, torch.Tensor]:
    p = as_probs(caller, probs, "probs")
    q = as_probs(caller, reference, "reference")
    check_same_shape(caller, p, q, "probs", "reference")
    return p, q


def top1_agreement(probs: ProbsLike, reference: ProbsLike) -> float:
    """Fraction of inputs whose most probable class matches the reference's.

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` or an ``MCResult``.
        reference: The same, from the reference method.

    Shape:
        - probs, reference: ``(N, C)`` (or ``(S, N, C)``).

    Returns:
        Agreement in ``[0, 1]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
        >>> q = torch.tensor([[0.6, 0.4], [0.7, 0.3]])
        >>> top1_agreement(p, q)
        0.5
    """
    p, q = _probs_pair("top1_agreement", probs, reference)
    return float((p.argmax(-1) == q.argmax(-1)).double().mean())


def total_variation(probs: ProbsLike, reference: ProbsLike) -> float:
    """Mean total-variation distance ``0.5 sum_c |p_c - q_c|`` over inputs.

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` or an ``MCResult``.
        reference: The same, from the reference method.

    Shape:
        - probs, reference: ``(N, C)`` (or ``(S, N, C)``).

    Returns:
        Mean distance in ``[0, 1]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
        >>> q = torch.tensor([[0.6, 0.4], [0.7, 0.3]])
        >>> round(total_variation(p, q), 4)
        0.3
    """
    p, q = _probs_pair("total_variation", probs, reference)
    return float(0.5 * (p - q).abs().sum(-1).mean())


def _moments(
    caller: str, mean: TensorLike, std: TensorLike, prefix: str
) -> tuple[torch.Tensor, torch.Tensor]:
    mn, sn = f"{prefix}mean", f"{prefix}std"
    m = as_tensor(caller, mean, mn)
    s = as_tensor(caller, std, sn)
    check_same_shape(caller, m, s, mn, sn)
    check_finite(caller, m, mn)
    check_finite(caller, s, sn)
    if m.numel() == 0:
        raise ValueError(
            f"{caller}: expected at least one prediction, but got shape {tuple(m.shape)}. "
            "Pass a non-empty batch."
        )
    if bool((s < 0).any()):
        raise ValueError(
            f"{caller}: expected non-negative {sn}, but got minimum {s.min().item():.6g}. "
            "Pass standard deviations (sqrt of variances), not log-variances."
        )
    return m.flatten(), s.flatten()


def gaussian_w2(
    mean: TensorLike, std: TensorLike, ref_mean: TensorLike, ref_std: TensorLike
) -> float:
    """Mean Wasserstein-2 distance between per-output Gaussian predictives.

    Args:
        mean: Predictive means ``(N, ...)``.
        std: Predictive standard deviations (epistemic and aleatoric), same shape.
        ref_mean: Reference means, same shape.
        ref_std: Reference standard deviations, same shape.

    Shape:
        - all: ``(N, ...)``.

    Returns:
        ``mean_n sqrt((m_n - m'_n)^2 + (s_n - s'_n)^2)`` in the targets' units.

    Example:
        >>> import torch
        >>> round(gaussian_w2(torch.tensor([0.0]), torch.tensor([1.0]),
        ...                   torch.tensor([3.0]), torch.tensor([5.0])), 4)
        5.0
    """
    caller = "gaussian_w2"
    m, s = _moments(caller, mean, std, "")
    rm, rs = _moments(caller, ref_mean, ref_std, "ref_")
    check_same_shape(caller, m, rm, "mean", "ref_mean")
    return float(((m - rm) ** 2 + (s - rs) ** 2).sqrt().mean())


def std_correlation(std: TensorLike, ref_std: TensorLike) -> float:
    """Pearson correlation of two sets of predictive standard deviations.

    Args:
        std: Standard deviations ``(N, ...)``.
        ref_std: Reference standard deviations, same shape.

    Shape:
        - std, ref_std: ``(N, ...)``.

    Returns:
        Correlation in ``[-1, 1]``; NaN when either side is constant.

    Example:
        >>> import torch
        >>> a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 7.0])
        >>> round(std_correlation(a, b), 4)
        0.9934
    """
    caller = "std_correlation"
    a = as_tensor(caller, std, "std").flatten()
    b = as_tensor(caller, ref_std, "ref_std").flatten()
    check_same_shape(caller, a, b, "std", "ref_std")
    check_finite(caller, a, "std")
    check_finite(caller, b, "ref_std")
    da, db = a - a.mean(), b - b.mean()
    denom = (da.pow(2).sum() * db.pow(2).sum()).sqrt()
    if float(denom) == 0.0:
        return float("nan")
    return float((da * db).sum() / denom)
