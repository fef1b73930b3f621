"""Selective prediction: the risk-coverage curve and its area (AURC).

A classifier abstains on the most uncertain inputs first. By default the
uncertainty is ``1 - max_c p_c``; any score (higher = abstain first) can be
passed instead. Risk is the 0-1 error of ``argmax`` predictions.

Ties are handled exactly and independently of input order: the curve has one
point per distinct uncertainty value (coverage = fraction of inputs with
uncertainty ``<= u``, risk = error rate among them). AURC is the mean of the
risk after accepting ``k = 1..N`` inputs, ``(1/N) sum_k errors_k / k``, where
inside a group of tied inputs ``errors_k`` is its expectation over the order of
the ties (the group's errors spread evenly), i.e. the AURC averaged over every
tie-breaking.

References:
    Geifman, El-Yaniv (2017). Selective classification for deep neural
    networks. NeurIPS.
    Geifman, Uziel, El-Yaniv (2019). Bias-reduced uncertainty estimation for
    deep neural classifiers. ICLR (AURC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dropkit._validation import TensorLike, renamed_kwargs
from dropkit.metrics._checks import ProbsLike, as_labels, as_probs, as_vector


@dataclass
class RiskCoverage:
    """A risk-coverage curve, one point per distinct uncertainty value.

    Attributes:
        coverage: Fraction of inputs accepted ``(K,)``, increasing to 1.
        risk: Error rate among the accepted inputs ``(K,)``.
        thresholds: Uncertainty threshold of each point ``(K,)`` (accept ``<=``).
        aurc: Area under the curve as defined in the module docstring.
    """

    coverage: torch.Tensor
    risk: torch.Tensor
    thresholds: torch.Tensor
    aurc: float

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (JSON-ready)."""
        return {
            "coverage": self.coverage.tolist(),
            "risk": self.risk.tolist(),
            "thresholds": self.thresholds.tolist(),
            "aurc": self.aurc,
        }


@renamed_kwargs(labels="target")
def risk_coverage(
    probs: ProbsLike, target: TensorLike, *, uncertainty: TensorLike | None = None
) -> RiskCoverage:
    """Risk-coverage curve of abstaining on the most uncertain inputs first.

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` (averaged first) or
            an ``MCResult``.
        target: Integer class labels ``(N,)``.
        uncertainty: Optional score ``(N,)``, higher = abstain first; defaults
            to ``1 - max_c p_c``.

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target, uncertainty: ``(N,)``.

    Returns:
        A :class:`RiskCoverage`.

    Raises:
        ValueError: On bad probabilities, labels, scores or shapes.
    """
    p = as_probs("risk_coverage", probs)
    n = p.shape[0]
    y = as_labels("risk_coverage", target, n, p.shape[1])
    conf, pred = p.max(-1)
    u = (
        1.0 - conf
        if uncertainty is None
        else as_vector("risk_coverage", uncertainty, "uncertainty", n)
    )
    err = (pred != y).double()
    values, inverse = torch.unique(u, sorted=True, return_inverse=True)
    group_n = torch.bincount(inverse, minlength=values.shape[0]).double()
    group_err = torch.zeros_like(group_n).index_add_(0, inverse, err)
    cum_n = group_n.cumsum(0)
    cum_err = group_err.cumsum(0)
    # Expected errors after accepting k inputs: linear inside each tie group.
    k = torch.arange(1, n + 1, dtype=torch.float64)
    g = torch.bucketize(k, cum_n, right=False)  # group that holds the k-th input
    before_n = cum_n[g] - group_n[g]
    before_err = cum_err[g] - group_err[g]
    errors_k = before_err + (k - before_n) * group_err[g] / group_n[g]
    aurc = float((errors_k / k).mean())
    return RiskCoverage(cum_n / n, cum_err / cum_n, values, aurc)


@renamed_kwargs(labels="target")
def aurc(probs: ProbsLike, target: TensorLike, *, uncertainty: TensorLike | None = None) -> float:
    """Area under the risk-coverage curve (lower is better).

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` or an ``MCResult``.
        target: Integer class labels ``(N,)``.
        uncertainty: Optional score ``(N,)``, higher = abstain first.

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target, uncertainty: ``(N,)``.

    Returns:
        AURC in ``[0, 1]``.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
        >>> round(aurc(p, torch.tensor([0, 1, 0])), 6)  # risks 0, 1/2, 1/3
        0.277778
    """
    return risk_coverage(probs, target, uncertainty=uncertainty).aurc
