"""Out-of-distribution detection metrics for any score: AUROC, AUPR, FPR at TPR.

Convention: a **higher score means more likely OOD** (predictive entropy, mutual
information, ``1 - max prob``) and ``is_ood`` marks the positives. Pass ``-score``
for confidence-like scores.

* AUROC is the probability that a random OOD input scores higher than a random
  in-distribution input, ties counting one half (Mann-Whitney U / (n_pos n_neg));
  computed with scikit-learn's ``roc_auc_score``, whose trapezoidal ROC over the
  distinct thresholds gives exactly that.
* AUPR is scikit-learn's ``average_precision_score``: the step-wise (not
  interpolated) sum ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds.
  ``aupr_out`` treats OOD as positive with the score as is; ``aupr_in`` treats
  in-distribution as positive with the negated score.
* FPR at ``tpr`` (Hendrycks & Gimpel, 2017): flag an input as OOD when
  ``score >= t``; take the largest threshold ``t`` among the scores whose TPR
  reaches ``tpr`` and report the fraction of in-distribution inputs flagged.

References:
    Hendrycks, Gimpel (2017). A baseline for detecting misclassified and
    out-of-distribution examples in neural networks. ICLR.
    Davis, Goadrich (2006). The relationship between precision-recall and ROC
    curves. ICML.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dropkit._optional import require
from dropkit._validation import TensorLike
from dropkit.metrics._checks import MCResultLike, as_binary, as_vector


def _prepare(caller: str, scores: TensorLike, is_ood: TensorLike) -> tuple[np.ndarray, np.ndarray]:
    s = as_vector(caller, scores, "scores")
    y = as_binary(caller, is_ood, "is_ood", s.shape[0])
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        only = "OOD" if n_pos else "in-distribution"
        raise ValueError(
            f"{caller}: expected both OOD and in-distribution inputs in is_ood, but got "
            f"only {only} ({y.shape[0]} inputs). The metric is undefined for one class; "
            "pass scores for both sets."
        )
    return s.numpy(), y.numpy()


def _metrics() -> Any:
    return require("sklearn.metrics", "metrics", "dropkit.metrics")


def auroc(scores: TensorLike, is_ood: TensorLike) -> float:
    """Area under the ROC curve for detecting OOD inputs by ``scores``.

    Args:
        scores: Finite scores ``(N,)``, higher = more likely OOD.
        is_ood: Booleans or 0/1 ``(N,)``; both values must occur.

    Shape:
        - scores, is_ood: ``(N,)``.

    Returns:
        AUROC in ``[0, 1]`` (0.5 = chance); ties count one half.

    Raises:
        ValueError: If only one class occurs in ``is_ood``, scores are not
            finite or shapes disagree.

    Example:
        >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
    """
    s, y = _prepare("auroc", scores, is_ood)
    return float(_metrics().roc_auc_score(y, s))


def aupr_out(scores: TensorLike, is_ood: TensorLike) -> float:
    """Average precision with OOD as the positive class.

    Args:
        scores: Finite scores ``(N,)``, higher = more likely OOD.
        is_ood: Booleans or 0/1 ``(N,)``; both values must occur.

    Shape:
        - scores, is_ood: ``(N,)``.

    Returns:
        Step-wise average precision in ``[0, 1]``.
    """
    s, y = _prepare("aupr_out", scores, is_ood)
    return float(_metrics().average_precision_score(y, s))


def aupr_in(scores: TensorLike, is_ood: TensorLike) -> float:
    """Average precision with in-distribution as the positive class (score negated).

    Args:
        scores: Finite scores ``(N,)``, higher = more likely OOD.
        is_ood: Booleans or 0/1 ``(N,)``; both values must occur.

    Shape:
        - scores, is_ood: ``(N,)``.

    Returns:
        Step-wise average precision in ``[0, 1]``.
    """
    s, y = _prepare("aupr_in", scores, is_ood)
    return float(_metrics().average_precision_score(~y, -s))


def fpr_at_tpr(scores: TensorLike, is_ood: TensorLike, tpr: float = 0.95) -> float:
    """False-positive rate on in-distribution inputs when ``tpr`` of OOD is caught.

    Args:
        scores: Finite scores ``(N,)``, higher = more likely OOD.
        is_ood: Booleans or 0/1 ``(N,)``; both values must occur.
        tpr: Target true-positive rate in ``(0, 1]``.

    Shape:
        - scores, is_ood: ``(N,)``.

    Returns:
        The FPR at the largest threshold reaching the target TPR.

    Raises:
        ValueError: If ``tpr`` is outside ``(0, 1]`` or the inputs are invalid.
    """
    if isinstance(tpr, bool) or not isinstance(tpr, (int, float)) or not 0 < tpr <= 1:
        raise ValueError(
            f"fpr_at_tpr: expected tpr in (0, 1], but got {tpr!r}. Pass e.g. tpr=0.95."
        )
    s, y = _prepare("fpr_at_tpr", scores, is_ood)
    fpr, tpr_curve, _ = _metrics().roc_curve(y, s, drop_intermediate=False)
    # roc_curve walks thresholds from high to low; tpr_curve is non-decreasing.
    # A relative slack of a few ulps keeps e.g. 19/20 >= 0.95 true.
    hit = np.nonzero(tpr_curve >= tpr - 4 * math.ulp(1.0))[0]
    return float(fpr[hit[0]])


def ood_scores(result: MCResultLike) -> dict[str, torch.Tensor]:
    """The standard OOD scores of a classification ``MCResult`` (higher = more OOD).

    Returns ``max_softmax`` (``1 - max_c p_c``), ``predictive_entropy`` and, when
    the result has them, ``mutual_information`` and ``variation_ratio``.

    Args:
        result: A classification :class:`~dropkit.uncertainty.result.MCResult`.

    Returns:
        Name -> score ``(N,)`` dict.
    """
    out = {"max_softmax": 1.0 - result.probs.double().max(-1).values}
    for name in ("predictive_entropy", "mutual_information", "variation_ratio"):
        value = getattr(result, name, None)
        if value is not None:
            out[name] = value.double()
    return out
