"""Validation objectives of a sweep: NLL, accuracy, ECE, RMSE or a user callable.

A training function hands the study :class:`Predictions` after every epoch;
the objective turns them into one number. Classification outputs are MC-mean
probabilities ``(N, C)`` (probabilities, never logits, are averaged), scored
with :mod:`dropkit.metrics` (ECE: 15 equal-width bins of the top-label
confidence). Regression outputs are MC samples ``(S, N)``; their NLL is the
negative MC predictive log-likelihood under a Gaussian of precision ``tau``
(Gal & Ghahramani 2016).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

OBJECTIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (direction, tasks it applies to)
    "nll": ("minimize", ("classification", "regression")),
    "accuracy": ("maximize", ("classification",)),
    "ece": ("minimize", ("classification",)),
    "rmse": ("minimize", ("regression",)),
}
UserObjective = Callable[[torch.Tensor, torch.Tensor], float]
_WHERE = "sweep objective"


@dataclass
class Predictions:
    """What a training function reports on the validation set.

    Attributes:
        outputs: ``(N, C)`` MC-mean probabilities (classification) or ``(S, N)``
            MC samples in the target's units (regression).
        targets: ``(N,)`` labels or targets.
        task: ``"classification"`` or ``"regression"``.
        tau: Model precision for the regression NLL.
    """

    outputs: torch.Tensor
    targets: torch.Tensor
    task: str = "classification"
    tau: float | None = None


def resolve(objective: str | UserObjective, direction: str | None = None) -> tuple[str, str]:
    """Check an objective before anything is created; return ``(name, direction)``.

    Raises:
        ValueError: On an unknown name or direction (known names are listed).
        TypeError: If ``objective`` is neither a name nor a callable.
    """
    if direction is not None and direction not in ("minimize", "maximize"):
        raise ValueError(
            f"{_WHERE}: expected direction 'minimize' or 'maximize', but got {direction!r}. "
            "Pick one of minimize, maximize."
        )
    if callable(objective):
        return getattr(objective, "__name__", "custom"), direction or "minimize"
    if not isinstance(objective, str):
        raise TypeError(
            f"{_WHERE}: expected a metric name or a callable(outputs, targets) -> float, but got "
            f"{type(objective).__name__!r}. Pass e.g. 'nll'."
        )
    if objective not in OBJECTIVES:
        raise ValueError(
            f"{_WHERE}: expected one of {sorted(OBJECTIVES)}, but got {objective!r}. "
            f"Pick one of {', '.join(sorted(OBJECTIVES))}, or pass a callable."
        )
    return objective, direction or OBJECTIVES[objective][0]


def check_task(objective: str | UserObjective, task: str) -> None:
    """Raise ValueError if a named objective does not apply to ``task``."""
    if isinstance(objective, str) and task not in OBJECTIVES[objective][1]:
        usable = sorted(k for k, (_, tasks) in OBJECTIVES.items() if task in tasks)
        raise ValueError(
            f"{_WHERE}: expected an objective for {task}, but got {objective!r}. "
            f"Use one of {', '.join(usable)}."
        )


def score(objective: str | UserObjective, preds: Predictions) -> float:
    """Evaluate ``objective`` on ``preds``.

    Returns:
        The objective value (NaN becomes ``inf`` so a study never ranks it best).
    """
    if callable(objective):
        value = float(objective(preds.outputs, preds.targets))
    elif preds.task == "regression":
        value = _regression(objective, preds)
    else:
        from dropkit.metrics import accuracy, ece, nll

        fn = {"nll": nll, "accuracy": accuracy, "ece": ece}[objective]
        value = float(fn(preds.outputs.double(), preds.targets))
    return value if math.isfinite(value) or value == math.inf else math.inf


def _regression(objective: str, preds: Predictions) -> float:
    samples = preds.outputs.double()  # (S, N)
    y = preds.targets.double()
    if objective == "rmse":
        return float(torch.sqrt(((samples.mean(0) - y) ** 2).mean()))
    tau = preds.tau
    if tau is None or not tau > 0:
        raise ValueError(
            f"{_WHERE}: expected Predictions.tau > 0 for a regression NLL, but got {tau!r}. "
            "Report the model precision tau with regression predictions."
        )
    if not (bool(torch.isfinite(samples).all()) and bool(torch.isfinite(y).all())):
        return math.inf  # a diverged trial scores worst (as the inline formula's NaN did)
    from dropkit.metrics import mc_log_likelihood

    return -mc_log_likelihood(samples, y, float(tau))
