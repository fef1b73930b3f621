"""Convergence diagnostics of the HMC reference: split R-hat, ESS, divergences.

Split R-hat and the effective sample size are pyro's implementations
(``pyro.ops.stats.split_gelman_rubin`` and ``effective_sample_size``, the
Gelman et al. (2013) split-chain estimator and Geyer's initial monotone
sequence with FFT autocorrelation); they are computed on every parameter and
on the predictive (the regression mean or every class probability at every
test input), because a network's weights are not identifiable (hidden units
can swap) while its predictions are.

References:
    Gelman, Carlin, Stern, Dunson, Vehtari, Rubin (2013). Bayesian Data
    Analysis, 3rd ed., section 11.4.
    Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021). Rank-normalization,
    folding, and localization: an improved R-hat. Bayesian Analysis.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

RHAT_MAX = 1.05
"""R-hat above this on any parameter or predictive value triggers a warning."""
ESS_MIN_PER_CHAIN = 25.0
"""Fewer effective samples than this times the chain count triggers a warning."""


def split_rhat(draws: torch.Tensor) -> torch.Tensor:
    """Split R-hat of every trailing element of ``draws``.

    Args:
        draws: Chains laid out ``(chains, samples, ...)``; at least 4 samples
            per chain (each chain is split in two halves).

    Shape:
        - draws: ``(K, S, ...)``.
        - Output: ``(...)``.

    Returns:
        Split R-hat per element (float64); 1 means the halves agree.
    """
    from pyro.ops.stats import split_gelman_rubin

    return split_gelman_rubin(draws.double(), chain_dim=0, sample_dim=1)


def ess(draws: torch.Tensor) -> torch.Tensor:
    """Effective sample size of every trailing element, summed over chains.

    Args:
        draws: Chains laid out ``(chains, samples, ...)``.

    Shape:
        - draws: ``(K, S, ...)``.
        - Output: ``(...)``.

    Returns:
        Effective sample size per element (float64).
    """
    from pyro.ops.stats import effective_sample_size

    return effective_sample_size(draws.double(), chain_dim=0, sample_dim=1)


def _summary(values: torch.Tensor, worst: str) -> dict[str, float]:
    flat = values.flatten()
    finite = flat[torch.isfinite(flat)]
    if finite.numel() == 0:
        return {worst: float("nan"), "median": float("nan")}
    pick = finite.max() if worst == "max" else finite.min()
    return {worst: float(pick), "median": float(finite.median())}


@dataclass
class HMCDiagnostics:
    """What the sampler did and how far to trust it.

    Attributes:
        chains: Number of chains.
        samples: Kept draws per chain.
        warmup: Warm-up (adaptation) iterations per chain, discarded.
        parameters: Scalars sampled (network parameters, plus the log noise
            precision when it is sampled).
        rhat: Split R-hat over parameters: ``{"max", "median"}``.
        ess: Effective sample size over parameters: ``{"min", "median"}``.
        predictive_rhat: Split R-hat over the predictive of the last
            :meth:`HMC.predict` call: ``{"max", "median"}``; empty before.
        predictive_ess: ESS over that predictive: ``{"min", "median"}``.
        divergences: Divergent transitions after warm-up, per chain.
        step_size: Adapted leapfrog step size, per chain.
        gradient_evaluations: Potential-and-gradient evaluations of single
            chains, warm-up included.
        wall_time_s: Seconds spent sampling, all chains.
        warnings: The warnings issued (empty when every check passed).
        sampler: ``"hmc"`` (vectorised chains) or ``"nuts"`` (pyro-ppl).
        thin: One iteration in ``thin`` was kept.
        accept_rate: Per chain after warm-up: the mean acceptance probability
            (``"hmc"``) or the fraction of accepted moves (``"nuts"``).
        mean_steps: Mean leapfrog steps per iteration after warm-up
            (``"hmc"``; NaN for ``"nuts"``).
        extensions: Calls of :meth:`HMC.extend` so far (``samples`` counts
            every kept draw).
    """

    chains: int
    samples: int
    warmup: int
    parameters: int
    rhat: dict[str, float] = field(default_factory=dict)
    ess: dict[str, float] = field(default_factory=dict)
    predictive_rhat: dict[str, float] = field(default_factory=dict)
    predictive_ess: dict[str, float] = field(default_factory=dict)
    divergences: list[int] = field(default_factory=list)
    step_size: list[float] = field(default_factory=list)
    gradient_evaluations: int = 0
    wall_time_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    sampler: str = "hmc"
    thin: int = 1
    accept_rate: list[float] = field(default_factory=list)
    mean_steps: float = float("nan")
    extensions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)

    def check(
        self,
        caller: str,
        what: str,
        rhat: dict[str, float],
        ess_: dict[str, float],
        stacklevel: int = 3,
    ) -> None:
        """Warn (``UserWarning``) when R-hat is high or the ESS low; record it.

        ``stacklevel`` counts from this method to the user's call.
        """
        fixes = "Run more warmup, more samples or more chains, or sample a smaller model."
        messages = []
        worst_rhat = rhat.get("max", float("nan"))
        if self.samples >= 4 and math.isnan(worst_rhat):
            accept = max(self.accept_rate, default=float("nan"))
            messages.append(
                f"{caller}: expected the chains to move, but got the same {what} in every kept "
                f"draw (best acceptance rate {accept:.3g}): every proposal was rejected. The step "
                f"size did not adapt in {self.warmup} warm-up iterations; run a longer warmup "
                "(150 or more)."
            )
        elif self.chains * self.samples >= 4 and not worst_rhat <= RHAT_MAX:
            messages.append(
                f"{caller}: expected split R-hat <= {RHAT_MAX} on the {what}, but got "
                f"{worst_rhat:.3g}. The chains disagree. {fixes}"
            )
        low = ESS_MIN_PER_CHAIN * self.chains
        worst_ess = ess_.get("min", float("nan"))
        if not math.isnan(worst_ess) and worst_ess < low:
            messages.append(
                f"{caller}: expected an effective sample size >= {low:.0f} on the {what}, but "
                f"got {worst_ess:.1f}. Monte Carlo error is large. {fixes}"
            )
        for msg in messages:
            self.warnings.append(msg)
            warnings.warn(msg, UserWarning, stacklevel=stacklevel)


def summarize_draws(draws: torch.Tensor) -> tuple[dict[str, float], dict[str, float]]:
    """R-hat ``{"max", "median"}`` and ESS ``{"min", "median"}`` of ``(K, S, ...)`` draws.

    Elements that never move (zero variance in every chain) have undefined
    R-hat and are left out of the summaries.
    """
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1).double()
    moving = flat.var(1).amax(0) > 0
    if not bool(moving.any()) or draws.shape[1] < 4:
        nan = float("nan")
        return {"max": nan, "median": nan}, {"min": nan, "median": nan}
    flat = flat[..., moving]
    return _summary(split_rhat(flat), "max"), _summary(ess(flat), "min")
