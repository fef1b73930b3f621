"""Dropout-rate schedules ``step -> p`` (re-exports of :mod:`dropkit.training.schedules`).

``import dropkit.schedules as S`` then ``S.cosine(0.5, 0.0, steps=1000)``.
Depth profiles (``linear_depth``, ``depth_profile``) are re-exported too.

References:
    Morerio et al., "Curriculum Dropout", ICCV 2017.
    Liu et al., "Dropout Reduces Underfitting", ICML 2023.
"""

from dropkit.training.depth import DepthProfile, constant_depth, depth_profile, linear_depth
from dropkit.training.schedules import (
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
