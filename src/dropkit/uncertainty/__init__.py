"""Monte Carlo dropout predictions and what they return.

:func:`mc_predict` runs ``T`` stochastic passes (fast and exact: deterministic
prefix once, loop or batched sampling, adaptive stops, seeded per-sample masks)
and returns an :class:`MCResult`; :class:`MCAccumulator` is its streaming
reduction, usable on its own.

References:
    Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
"""

from dropkit.uncertainty.accumulate import MCAccumulator
from dropkit.uncertainty.masks import sample_generator, sample_seed
from dropkit.uncertainty.predict import mc_predict
from dropkit.uncertainty.result import MCResult

__all__ = ["MCAccumulator", "MCResult", "mc_predict", "sample_generator", "sample_seed"]
