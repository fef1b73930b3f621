"""Regression metrics: RMSE, Gaussian NLL, MC mixture log-likelihood, interval coverage.

* ``rmse``: ``sqrt(mean (mean - target)^2)`` over every element.
* ``gaussian_nll``: ``mean 0.5 log(2 pi var) + (target - mean)^2 / (2 var)`` over
  every element (the full constant is included, unlike ``F.gaussian_nll_loss``).
* ``mc_log_likelihood`` (Gal & Ghahramani, 2016, eq. 8): for MC samples
  ``yhat_s`` and noise precision ``tau``, per input
  ``logsumexp_s(-tau/2 ||y - yhat_s||^2) - log S - D/2 log 2 pi + D/2 log tau``
  with ``D`` the output size per input; the mean over inputs is returned.
* ``interval_coverage``: fraction of targets inside the central Gaussian interval
  ``mean +- z std`` with ``z = Phi^-1((1 + level) / 2)``, both ends closed.
* ``regression_calibration_curve`` (Kuleshov et al., 2018): for levels ``q`` the
  observed frequency of ``Phi((y - mean) / std) <= q``; a calibrated model lies on
  the diagonal. The error is ``mean_q (observed_q - q)^2``.

References:
    Gal, Ghahramani (2016). Dropout as a Bayesian approximation. ICML.
    Kuleshov, Fenner, Ermon (2018). Accurate uncertainties for deep learning
    using calibrated regression. ICML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from dropkit._validation import TensorLike, _fail
from dropkit.metrics._checks import as_tensor, check_finite, check_same_shape


def _pair(caller: str, mean: TensorLike, target: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
    m = as_tensor(caller, mean, "mean")
    t = as_tensor(caller, target, "target")
    check_same_shape(caller, m, t, "mean", "target")
    if m.numel() == 0:
        raise ValueError(
            f"{caller}: expected at least one prediction, but got shape {tuple(m.shape)}. "
            "Pass a non-empty batch."
        )
    check_finite(caller, m, "mean")
    check_finite(caller, t, "target")
    return m, t


def _positive(caller: str, x: TensorLike, name: str, like: torch.Tensor) -> torch.Tensor:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        x = torch.tensor(float(x), dtype=torch.float64)
    v = as_tensor(caller, x, name)
    if v.dim() == 0:
        v = v.expand_as(like)
    check_same_shape(caller, like, v, "mean", name)
    check_finite(caller, v, name)
    if bool((v <= 0).any()):
        raise ValueError(
            f"{caller}: expected {name} > 0, but got minimum {v.min().item():.6g}. "
            "A predictive spread must be strictly positive; add the noise variance."
        )
    return v


def rmse(mean: TensorLike, target: TensorLike) -> float:
    """Root mean squared error over every element.

    Args:
        mean: Predictions ``(N, ...)``.
        target: Targets of the same shape.

    Shape:
        - mean, target: ``(N, ...)``.

    Returns:
        The RMSE.
    """
    m, t = _pair("rmse", mean, target)
    return float(((m - t) ** 2).mean().sqrt())


def gaussian_nll(mean: TensorLike, var: TensorLike, target: TensorLike) -> float:
    """Mean negative log-density of targets under ``N(mean, var)``, constant included.

    Args:
        mean: Predictive means ``(N, ...)``.
        var: Predictive variances, same shape (or a scalar), strictly positive.
        target: Targets, same shape.

    Shape:
        - mean, var, target: ``(N, ...)``.

    Returns:
        The mean NLL per element.

    Raises:
        ValueError: If a variance is not positive or shapes disagree.
    """
    m, t = _pair("gaussian_nll", mean, target)
    v = _positive("gaussian_nll", var, "var", m)
    return float((0.5 * torch.log(2 * math.pi * v) + (t - m) ** 2 / (2 * v)).mean())


def mc_log_likelihood(samples: TensorLike, target: TensorLike, tau: float) -> float:
    """MC-dropout predictive log-likelihood, a Gaussian mixture over the samples.

    Args:
        samples: Per-sample predictions ``(S, N, ...)``.
        target: Targets ``(N, ...)``.
        tau: Noise precision (``1 / sigma^2``), positive.

    Shape:
        - samples: ``(S, N, ...)``.
        - target: ``(N, ...)``.

    Returns:
        Mean over inputs of the per-input log-likelihood (higher is better).

    Raises:
        ValueError: If ``tau <= 0`` or shapes disagree.
    """
    x = as_tensor("mc_log_likelihood", samples, "samples")
    y = as_tensor("mc_log_likelihood", target, "target")
    if x.dim() < 2 or x.shape[1:] != y.shape:
        raise ValueError(
            "mc_log_likelihood: expected samples (S, *target.shape) = (S, "
            f"{', '.join(map(str, y.shape))}), but got {tuple(x.shape)}. "
            "Stack the per-sample predictions on dim 0."
        )
    check_finite("mc_log_likelihood", x, "samples")
    check_finite("mc_log_likelihood", y, "target")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
        raise ValueError(
            f"mc_log_likelihood: expected tau > 0, but got {tau!r}. "
            "tau is the noise precision 1 / sigma^2."
        )
    s = x.shape[0]
    d = y[0].numel() if y.dim() > 1 else 1
    sq = ((y.unsqueeze(0) - x) ** 2).reshape(s, y.shape[0], -1).sum(-1)  # (S, N)
    per = torch.logsumexp(-0.5 * tau * sq, 0) - math.log(s)
    per = per + 0.5 * d * (math.log(tau) - math.log(2 * math.pi))
    return float(per.mean())


def _z(level: float) -> float:
    # Phi^-1((1 + level) / 2) = sqrt(2) erfinv(level)
    return math.sqrt(2.0) * torch.special.erfinv(torch.tensor(level, dtype=torch.float64)).item()


def _check_level(caller: str, level: object) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise _fail(ValueError, caller, "level in (0, 1)", level, "Pass e.g. 0.95.")
    return float(level)


def interval_coverage(
    mean: TensorLike, std: TensorLike, target: TensorLike, *, level: float = 0.95
) -> float:
    """Fraction of targets inside the central Gaussian ``level`` interval.

    Args:
        mean: Predictive means ``(N, ...)``.
        std: Predictive standard deviations, same shape or scalar, positive.
        target: Targets, same shape.
        level: Nominal coverage in ``(0, 1)``.

    Shape:
        - mean, std, target: ``(N, ...)``.

    Returns:
        Observed coverage (compare with ``level``).
    """
    lv = _check_level("interval_coverage", level)
    m, t = _pair("interval_coverage", mean, target)
    sd = _positive("interval_coverage", std, "std", m)
    half = _z(lv) * sd
    return float(((t >= m - half) & (t <= m + half)).double().mean())


@dataclass
class RegressionCalibration:
    """Expected vs observed CDF levels (Kuleshov et al., 2018).

    Attributes:
        expected: Levels ``q`` ``(K,)``.
        observed: Fraction of targets with ``Phi((y - mean) / std) <= q`` ``(K,)``.
        error: ``mean (observed - expected)^2``.
    """

    expected: torch.Tensor
    observed: torch.Tensor
    error: float

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (JSON-ready)."""
        return {
            "expected": self.expected.tolist(),
            "observed": self.observed.tolist(),
            "error": self.error,
        }


def regression_calibration_curve(
    mean: TensorLike, std: TensorLike, target: TensorLike, *, n_levels: int = 19
) -> RegressionCalibration:
    """Calibration curve of Gaussian predictive CDFs at ``n_levels`` evenly spaced levels.

    Levels are ``q_k = k / (n_levels + 1)`` for ``k = 1..n_levels``.

    Args:
        mean: Predictive means ``(N, ...)``.
        std: Predictive standard deviations, same shape or scalar, positive.
        target: Targets, same shape.
        n_levels: Number of levels ``K``.

    Shape:
        - mean, std, target: ``(N, ...)``.

    Returns:
        A :class:`RegressionCalibration`.
    """
    if isinstance(n_levels, bool) or not isinstance(n_levels, int) or n_levels < 1:
        raise ValueError(
            "regression_calibration_curve: expected n_levels to be an int >= 1, "
            f"but got {n_levels!r}. Pass e.g. 19."
        )
    m, t = _pair("regression_calibration_curve", mean, target)
    sd = _positive("regression_calibration_curve", std, "std", m)
    cdf = 0.5 * (1.0 + torch.erf((t - m) / (sd * math.sqrt(2.0)))).flatten()
    q = torch.arange(1, n_levels + 1, dtype=torch.float64) / (n_levels + 1)
    observed = (cdf[None, :] <= q[:, None]).double().mean(1)
    return RegressionCalibration(q, observed, float(((observed - q) ** 2).mean()))
