"""Calibration metrics: ECE, MCE, classwise ECE, reliability diagrams, Brier, NLL.

Definitions (all computed in float64, no clipping of probabilities):

* **Confidence** of a prediction is its largest probability ``max_c p_c`` and the
  prediction is ``argmax_c p_c`` (first index on ties).
* **Equal-width bins** (``binning="width"``): edges ``e_b = b / B`` for
  ``b = 0..B`` (computed as ``arange(B + 1) / B`` in float64). Bin ``b`` is the
  half-open interval ``(e_b, e_{b+1}]``, closed on the right; the first bin is
  ``[0, e_1]`` so a confidence of exactly 0 is counted.
* **Equal-mass bins** (``binning="mass"``): with the confidences sorted,
  ``c_(1) <= ... <= c_(N)``, the inner edges are the order statistics
  ``e_b = c_(ceil(b N / B))`` for ``b = 1..B-1`` and ``e_0 = 0``, ``e_B = 1``;
  bins are closed on the right as above. Tied confidences therefore always share
  a bin (the result never depends on input order) and, with ties or ``B > N``,
  some bins may be empty.
* **Empty bins** carry zero weight in ECE and are skipped by MCE; in the
  reliability-diagram data their mean confidence and accuracy are NaN and their
  count is 0.
* ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` (Naeini et al., 2015; Guo et al.,
  2017); ``MCE = max_b |acc_b - conf_b|`` over non-empty bins.
* Classwise ECE (Kull et al., 2019): for each class ``k`` bin ``p_k`` (not the
  max) against ``1[y = k]`` with the same binning, then average over classes.
* Brier score: ``mean_n sum_c (p_nc - 1[y_n = c])^2`` in ``[0, 2]`` (Brier, 1950;
  the multi-class sum, not divided by ``C``).
* NLL: ``mean_n -log p_{n, y_n}``; a true-class probability of exactly 0 gives
  ``inf`` (never NaN, never clipped).

References:
    Naeini, Cooper, Hauskrecht (2015). Obtaining well calibrated probabilities
    using Bayesian binning. AAAI.
    Guo, Pleiss, Sun, Weinberger (2017). On calibration of modern neural
    networks. ICML.
    Kull et al. (2019). Beyond temperature scaling: obtaining well-calibrated
    multi-class probabilities with Dirichlet calibration. NeurIPS.
    Brier (1950). Verification of forecasts expressed in terms of probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dropkit._validation import TensorLike, check_choice, renamed_kwargs
from dropkit.metrics._checks import ProbsLike, as_labels, as_probs, check_bins

BINNINGS = ("width", "mass")


@dataclass
class ReliabilityDiagram:
    """Per-bin data of a reliability diagram.

    Attributes:
        edges: Bin edges ``(B + 1,)``; bin ``b`` is ``(edges[b], edges[b + 1]]``.
        confidence: Mean confidence per bin ``(B,)``, NaN for empty bins.
        accuracy: Accuracy (or empirical frequency) per bin ``(B,)``, NaN if empty.
        counts: Number of predictions per bin ``(B,)``, int64.
    """

    edges: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor
    counts: torch.Tensor

    @property
    def gaps(self) -> torch.Tensor:
        """``|accuracy - confidence|`` per bin (NaN for empty bins)."""
        return (self.accuracy - self.confidence).abs()

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        """Plain lists (JSON-ready; NaN stays NaN)."""
        return {
            "edges": self.edges.tolist(),
            "confidence": self.confidence.tolist(),
            "accuracy": self.accuracy.tolist(),
            "counts": self.counts.tolist(),
        }


def bin_edges(conf: torch.Tensor, n_bins: int, binning: str) -> torch.Tensor:
    """Return the ``(n_bins + 1,)`` float64 bin edges for confidences ``conf``."""
    if binning == "width":
        return torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    srt = conf.sort().values
    n = srt.shape[0]
    inner = [srt[-(-b * n // n_bins) - 1] for b in range(1, n_bins)]  # c_(ceil(b N / B))
    return torch.stack(
        [torch.zeros((), dtype=torch.float64), *inner, torch.ones((), dtype=torch.float64)]
    )


def _bin_stats(
    conf: torch.Tensor, hit: torch.Tensor, n_bins: int, binning: str
) -> ReliabilityDiagram:
    edges = bin_edges(conf, n_bins, binning)
    # right=False: index i satisfies edges[i] < conf <= edges[i + 1]
    idx = torch.bucketize(conf, edges[1:-1].contiguous(), right=False)
    counts = torch.bincount(idx, minlength=n_bins)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, conf)
    hit_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, hit)
    denom = counts.double()
    with torch.no_grad():
        mean_conf = torch.where(counts > 0, conf_sum / denom.clamp_min(1), float("nan"))
        mean_hit = torch.where(counts > 0, hit_sum / denom.clamp_min(1), float("nan"))
    return ReliabilityDiagram(edges, mean_conf, mean_hit, counts)


def _top_label(
    caller: str, probs: ProbsLike, target: TensorLike
) -> tuple[torch.Tensor, torch.Tensor]:
    p = as_probs(caller, probs)
    y = as_labels(caller, target, p.shape[0], p.shape[1])
    conf, pred = p.max(-1)
    return conf, (pred == y).double()


def _binning(caller: str, n_bins: Any, binning: Any) -> tuple[int, str]:
    return check_bins(caller, n_bins), check_choice(caller, binning, "binning", BINNINGS)


@renamed_kwargs(labels="target")
def reliability_diagram(
    probs: ProbsLike, target: TensorLike, *, n_bins: int = 15, binning: str = "width"
) -> ReliabilityDiagram:
    """Return the per-bin confidence, accuracy and counts of top-label predictions.

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` (averaged over
            ``S`` first) or an ``MCResult``.
        target: Integer class labels ``(N,)``.
        n_bins: Number of bins ``B``.
        binning: ``"width"`` (equal-width) or ``"mass"`` (equal-mass); see the
            module docstring for the exact edges.

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target: ``(N,)``.

    Returns:
        A :class:`ReliabilityDiagram`.

    Raises:
        ValueError: On bad probabilities, labels, shapes or options.
    """
    return _diagram("reliability_diagram", probs, target, n_bins, binning)


def _diagram(
    caller: str, probs: ProbsLike, target: TensorLike, n_bins: Any, binning: Any
) -> ReliabilityDiagram:
    nb, mode = _binning(caller, n_bins, binning)
    conf, hit = _top_label(caller, probs, target)
    return _bin_stats(conf, hit, nb, mode)


def _ece_from(d: ReliabilityDiagram) -> float:
    n = d.counts.sum()
    used = d.counts > 0
    return float((d.counts[used].double() / n * d.gaps[used]).sum())


@renamed_kwargs(labels="target")
def ece(probs: ProbsLike, target: TensorLike, *, n_bins: int = 15, binning: str = "width") -> float:
    """Expected calibration error of the top-label confidence.

    ``sum_b (n_b / N) |acc_b - conf_b|`` with the binning of the module docstring.

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` (averaged first) or
            an ``MCResult``.
        target: Integer class labels ``(N,)``.
        n_bins: Number of bins.
        binning: ``"width"`` or ``"mass"``.

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target: ``(N,)``.

    Returns:
        ECE in ``[0, 1]`` as a float.

    Raises:
        ValueError: If rows don't sum to 1 (tolerance ``PROB_SUM_ATOL``), values
            are NaN/negative, labels are out of range or shapes disagree.

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4]], dtype=torch.float64)
        >>> round(ece(p, torch.tensor([0, 1]), n_bins=10), 12)  # (0.1 + 0.6) / 2
        0.35
    """
    return _ece_from(_diagram("ece", probs, target, n_bins, binning))


@renamed_kwargs(labels="target")
def mce(probs: ProbsLike, target: TensorLike, *, n_bins: int = 15, binning: str = "width") -> float:
    """Maximum calibration error: the largest ``|acc_b - conf_b|`` over non-empty bins.

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` or an ``MCResult``.
        target: Integer class labels ``(N,)``.
        n_bins: Number of bins.
        binning: ``"width"`` or ``"mass"``.

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target: ``(N,)``.

    Returns:
        MCE in ``[0, 1]``.
    """
    d = _diagram("mce", probs, target, n_bins, binning)
    return float(d.gaps[d.counts > 0].max())


@renamed_kwargs(labels="target")
def classwise_ece(
    probs: ProbsLike, target: TensorLike, *, n_bins: int = 15, binning: str = "width"
) -> float:
    """Classwise ECE: per-class ECE of ``p_k`` against ``1[y = k]``, averaged over classes.

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` or an ``MCResult``.
        target: Integer class labels ``(N,)``.
        n_bins: Number of bins per class.
        binning: ``"width"`` or ``"mass"`` (mass edges computed per class).

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target: ``(N,)``.

    Returns:
        The mean over the ``C`` classes of each class's ECE.
    """
    nb, mode = _binning("classwise_ece", n_bins, binning)
    p = as_probs("classwise_ece", probs)
    y = as_labels("classwise_ece", target, p.shape[0], p.shape[1])
    per = [
        _ece_from(_bin_stats(p[:, k].contiguous(), (y == k).double(), nb, mode))
        for k in range(p.shape[1])
    ]
    return float(sum(per) / len(per))


@renamed_kwargs(labels="target")
def brier(probs: ProbsLike, target: TensorLike) -> float:
    """Multi-class Brier score ``mean_n sum_c (p_nc - 1[y_n = c])^2``, in ``[0, 2]``.

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` or an ``MCResult``.
        target: Integer class labels ``(N,)``.

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target: ``(N,)``.

    Returns:
        The Brier score.
    """
    p = as_probs("brier", probs)
    y = as_labels("brier", target, p.shape[0], p.shape[1])
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).double()
    return float(((p - onehot) ** 2).sum(-1).mean())


@renamed_kwargs(labels="target")
def nll(probs: ProbsLike, target: TensorLike) -> float:
    """Negative log-likelihood ``mean_n -log p_{n, y_n}`` (natural log).

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` (averaged first, so
            this is the NLL of the MC predictive) or an ``MCResult``.
        target: Integer class labels ``(N,)``.

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target: ``(N,)``.

    Returns:
        The mean NLL; ``inf`` if a true class has probability exactly 0.
    """
    p = as_probs("nll", probs)
    y = as_labels("nll", target, p.shape[0], p.shape[1])
    return float(-p.gather(1, y[:, None]).log().mean())


@renamed_kwargs(labels="target")
def accuracy(probs: ProbsLike, target: TensorLike) -> float:
    """Top-1 accuracy of ``argmax`` predictions (first index on ties).

    Args:
        probs: Probabilities ``(N, C)``, samples ``(S, N, C)`` or an ``MCResult``.
        target: Integer class labels ``(N,)``.

    Shape:
        - probs: ``(N, C)`` or ``(S, N, C)``.
        - target: ``(N,)``.

    Returns:
        The fraction of correct predictions.
    """
    p = as_probs("accuracy", probs)
    y = as_labels("accuracy", target, p.shape[0], p.shape[1])
    return float((p.argmax(-1) == y).double().mean())
