"""Dropout rates that change over training time and over depth: one home.

Two kinds of profile live here, both pure and validated:

* :mod:`dropkit.schedules.time` -- schedules ``step -> p`` (constant,
  linear, cosine, warm-up, curriculum, early, late, piecewise) that compose.
* :mod:`dropkit.schedules.depth` -- depth profiles ``depth_fraction -> p``
  (``linear_depth``, ``constant_depth``, ``depth_profile``);
  :func:`dropkit.functional.drop_path_rates` is ``linear_depth(p)`` read at
  ``depth`` equally spaced blocks.

``import dropkit.schedules as S`` then ``S.cosine(0.5, 0.0, steps=1000)``.
:class:`dropkit.training.DropoutScheduler` applies them to a model.

References:
    Morerio et al., "Curriculum Dropout", ICCV 2017.
    Liu et al., "Dropout Reduces Underfitting", ICML 2023.
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
"""

from dropkit.schedules.depth import DepthProfile, constant_depth, depth_profile, linear_depth
from dropkit.schedules.time import (
    Schedule,
    as_schedule,
    clip,
    constant,
    cosine,
    curriculum,
    early,
    late,
    linear,
    maximum,
    minimum,
    piecewise,
    scale,
    sequence,
    warmup,
)

__all__ = [
    "DepthProfile",
    "Schedule",
    "as_schedule",
    "clip",
    "constant",
    "constant_depth",
    "cosine",
    "curriculum",
    "depth_profile",
    "early",
    "late",
    "linear",
    "linear_depth",
    "maximum",
    "minimum",
    "piecewise",
    "scale",
    "sequence",
    "warmup",
]
