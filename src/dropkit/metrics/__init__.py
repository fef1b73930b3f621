"""Uncertainty metrics: information, calibration, OOD, selective prediction, regression.

Functional and layout-agnostic: classification metrics take probabilities
``(N, C)``, MC / ensemble samples ``(S, N, C)`` (averaged over ``S`` first) or an
:class:`~dropkit.uncertainty.result.MCResult`; every computation is float64. Bad
input (NaN, rows not summing to 1 within ``PROB_SUM_ATOL``, labels out of range,
mismatched shapes, a single class in ``is_ood``) raises a clear error, never a
silent NaN. Exact definitions (binning, ties) are in each module's docstring.
"""

from __future__ import annotations

from dropkit.metrics._checks import PROB_SUM_ATOL
from dropkit.metrics.agreement import (
    gaussian_w2,
    std_correlation,
    top1_agreement,
    total_variation,
)
from dropkit.metrics.calibration import (
    ReliabilityDiagram,
    accuracy,
    brier,
    classwise_ece,
    ece,
    mce,
    nll,
    reliability_diagram,
)
from dropkit.metrics.information import mutual_information, predictive_entropy
from dropkit.metrics.ood import aupr_in, aupr_out, auroc, fpr_at_tpr, ood_scores
from dropkit.metrics.regression import (
    RegressionCalibration,
    gaussian_nll,
    interval_coverage,
    mc_log_likelihood,
    regression_calibration_curve,
    rmse,
)
from dropkit.metrics.selective import RiskCoverage, aurc, risk_coverage

__all__ = [
    "PROB_SUM_ATOL",
    "RegressionCalibration",
    "ReliabilityDiagram",
    "RiskCoverage",
    "accuracy",
    "aupr_in",
    "aupr_out",
    "aurc",
    "auroc",
    "brier",
    "classwise_ece",
    "ece",
    "fpr_at_tpr",
    "gaussian_nll",
    "gaussian_w2",
    "interval_coverage",
    "mc_log_likelihood",
    "mce",
    "mutual_information",
    "nll",
    "ood_scores",
    "predictive_entropy",
    "regression_calibration_curve",
    "reliability_diagram",
    "risk_coverage",
    "rmse",
    "std_correlation",
    "top1_agreement",
    "total_variation",
]
