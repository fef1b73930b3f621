"""Training with dropout: schedules, a scheduler, an overfitting monitor, advice.

* :mod:`dropkit.schedules` -- pure functions ``step -> p`` (constant, linear,
  cosine, warm-up, curriculum, early, late, piecewise) that compose.
* :class:`DropoutScheduler` -- applies a schedule (and a depth profile) to any
  model through :func:`dropkit.set_dropout`; resumable.
* :class:`OverfitMonitor` -- per-epoch regime verdicts with escalation advice.
* :func:`recommend_rate` -- the scenario table and a size-based rule.
* :func:`check_placement` -- dropout feeding BatchNorm, dropout left at 0.
* :func:`steps` / :func:`scheduled` -- the plain-loop helpers.

Callbacks for Hugging Face ``Trainer`` and Lightning live in
:mod:`dropkit.integrations.hf` and :mod:`dropkit.integrations.lightning`.

References:
    Liu et al., "Dropout Reduces Underfitting", ICML 2023.
    Morerio et al., "Curriculum Dropout", ICCV 2017.
"""

from dropkit.schedules.depth import DepthProfile, constant_depth, depth_profile, linear_depth
from dropkit.schedules.time import Schedule, as_schedule
from dropkit.training.advisor import SCENARIOS, Recommendation, recommend_rate
from dropkit.training.loop import scheduled, steps
from dropkit.training.monitor import REGIMES, Action, OverfitMonitor, Verdict
from dropkit.training.placement import PlacementWarning, check_placement
from dropkit.training.scheduler import DropoutScheduler

__all__ = [
    "REGIMES",
    "SCENARIOS",
    "Action",
    "DepthProfile",
    "DropoutScheduler",
    "OverfitMonitor",
    "PlacementWarning",
    "Recommendation",
    "Schedule",
    "Verdict",
    "as_schedule",
    "check_placement",
    "constant_depth",
    "depth_profile",
    "linear_depth",
    "recommend_rate",
    "scheduled",
    "steps",
]
