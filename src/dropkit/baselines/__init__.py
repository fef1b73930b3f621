"""Rival uncertainty methods with one interface: each predicts an ``MCResult``.

Deterministic softmax, temperature scaling (also on top of the MC-dropout
predictive), deep ensembles and last-layer Laplace (laplace-torch), plus
:func:`compare_uncertainty`, which runs them next to MC dropout on one protocol
and reports quality next to cost.
"""

from __future__ import annotations

from dropkit.baselines.compare import Comparison, MethodReport, compare_uncertainty
from dropkit.baselines.ensemble import DeepEnsemble
from dropkit.baselines.hmc import HMC
from dropkit.baselines.laplace import LastLayerLaplace
from dropkit.baselines.softmax import softmax_predict
from dropkit.baselines.temperature import TemperatureScaling

__all__ = [
    "Comparison",
    "DeepEnsemble",
    "HMC",
    "LastLayerLaplace",
    "MethodReport",
    "TemperatureScaling",
    "compare_uncertainty",
    "softmax_predict",
]
